"""Lab admins manage the users of their own organisation, never another organisation's."""
import pytest
from django.urls import reverse

from accounts.models import User
from cases.models import AuditEvent

pytestmark = pytest.mark.django_db

STRONG = "Leukocyte-Morphology-42"


def test_user_list_shows_only_own_organisation(login, world):
    response = login(world.lab_admin).get(reverse("user-list"))
    listed = {u.username for u in response.context["page_obj"]}
    assert listed == {world.pathologist.username, world.pathologist2.username, world.lab_admin.username}
    response = login(world.site_admin).get(reverse("user-list"))
    listed = {u.username for u in response.context["page_obj"]}
    assert listed == {world.clinician.username, world.colleague.username, world.site_admin.username}


def test_user_list_hides_superusers(login, world):
    User.objects.create_superuser("root", "r@example.org", "x" * 12, organisation=world.lab)
    response = login(world.lab_admin).get(reverse("user-list"))
    assert "root" not in {u.username for u in response.context["page_obj"]}


def test_create_user_in_own_organisation(login, world):
    client = login(world.lab_admin)
    response = client.post(reverse("user-create"), {
        "username": "nina_new", "first_name": "Nina", "last_name": "New", "email": "nina@example.org",
        "role": "pathologist", "password1": STRONG, "password2": STRONG,
    })
    assert response.status_code == 302
    nina = User.objects.get(username="nina_new")
    assert (nina.organisation, nina.role, nina.is_superuser, nina.is_staff) == (world.lab, "pathologist", False, False)
    assert nina.check_password(STRONG)
    assert AuditEvent.objects.filter(action="created", actor=world.lab_admin, detail__username="nina_new").exists()
    assert "User nina_new created as pathologist." in client.get(reverse("user-list")).content.decode()


def test_create_user_refuses_weak_or_mismatched_passwords(login, world):
    client = login(world.lab_admin)
    data = {"username": "w", "first_name": "W", "last_name": "W", "role": "clinician"}
    response = client.post(reverse("user-create"), {**data, "password1": "short", "password2": "short"})
    assert "password1" in response.context["form"].errors
    response = client.post(reverse("user-create"), {**data, "password1": STRONG, "password2": STRONG + "x"})
    assert "password2" in response.context["form"].errors
    response = client.post(reverse("user-create"), data)
    assert "password1" in response.context["form"].errors
    assert not User.objects.filter(username="w").exists()


def test_create_user_refuses_unknown_role_and_taken_username(login, world):
    client = login(world.lab_admin)
    response = client.post(reverse("user-create"), {
        "username": world.clinician.username, "first_name": "A", "last_name": "B", "role": "superuser",
        "password1": STRONG, "password2": STRONG,
    })
    errors = response.context["form"].errors
    assert "role" in errors and "username" in errors


def test_change_role_and_deactivate(login, world):
    client = login(world.lab_admin)
    response = client.post(reverse("user-edit", args=[world.pathologist2.pk]), {
        "first_name": "Peter", "last_name": "Tester", "email": "", "role": "lab_admin", "is_active": "on",
    })
    assert response.status_code == 302
    world.pathologist2.refresh_from_db()
    assert world.pathologist2.role == "lab_admin"
    event = AuditEvent.objects.filter(action="changed", detail__username=world.pathologist2.username).get()
    assert event.detail["changes"] == {"role": "lab_admin"}
    assert event.detail["previous"] == {"role": "pathologist"}

    client.post(reverse("user-edit", args=[world.pathologist2.pk]), {"action": "deactivate"})
    world.pathologist2.refresh_from_db()
    assert not world.pathologist2.is_active
    client.post(reverse("user-edit", args=[world.pathologist2.pk]), {"action": "reactivate"})
    world.pathologist2.refresh_from_db()
    assert world.pathologist2.is_active


def test_deactivated_user_cannot_sign_in(client, login, world):
    from tests.conftest import DEMO_PASSWORD

    login(world.lab_admin).post(reverse("user-edit", args=[world.pathologist.pk]), {"action": "deactivate"})
    client.logout()
    response = client.post(reverse("login"), {"username": world.pathologist.username, "password": DEMO_PASSWORD})
    assert response.status_code == 200  # the form again, not a redirect
    assert not response.wsgi_request.user.is_authenticated


def test_reset_password(login, world):
    client = login(world.lab_admin)
    client.post(reverse("user-edit", args=[world.pathologist.pk]), {
        "first_name": "Paula", "last_name": "Tester", "role": "pathologist", "is_active": "on",
        "password1": STRONG, "password2": STRONG,
    })
    world.pathologist.refresh_from_db()
    assert world.pathologist.check_password(STRONG)


def test_admin_cannot_lock_themselves_out(login, world):
    client = login(world.lab_admin)
    response = client.post(reverse("user-edit", args=[world.lab_admin.pk]), {"action": "deactivate"}, follow=True)
    assert "You cannot deactivate your own account." in response.content.decode()
    client.post(reverse("user-edit", args=[world.lab_admin.pk]), {
        "first_name": "Lars", "last_name": "Admin", "role": "clinician",  # is_active omitted
    })
    world.lab_admin.refresh_from_db()
    assert world.lab_admin.is_active
    assert world.lab_admin.role == "lab_admin"
    assert world.lab_admin.last_name == "Admin"


@pytest.mark.parametrize("action", ["get", "edit", "deactivate", "promote"])
def test_lab_admin_cannot_touch_another_organisations_users(login, world, action):
    client = login(world.lab_admin)
    url = reverse("user-edit", args=[world.clinician.pk])
    if action == "get":
        response = client.get(url)
    elif action == "edit":
        response = client.post(url, {"first_name": "Hacked", "last_name": "X", "role": "clinician", "is_active": "on"})
    elif action == "deactivate":
        response = client.post(url, {"action": "deactivate"})
    else:
        response = client.post(url, {"first_name": "Clara", "last_name": "Tester", "role": "lab_admin", "is_active": "on"})
    assert response.status_code == 404
    world.clinician.refresh_from_db()
    assert world.clinician.first_name == "Clara"
    assert world.clinician.is_active and world.clinician.role == "clinician"


def test_created_users_always_join_the_admins_organisation(login, world):
    login(world.lab_admin).post(reverse("user-create"), {
        "username": "sneaky", "first_name": "S", "last_name": "N", "role": "clinician",
        "organisation": world.other_site.pk, "is_superuser": "on", "is_staff": "on",
        "password1": STRONG, "password2": STRONG,
    })
    sneaky = User.objects.get(username="sneaky")
    assert sneaky.organisation == world.lab
    assert not sneaky.is_superuser and not sneaky.is_staff


def test_user_list_search_and_role_filter(login, world):
    client = login(world.lab_admin)
    response = client.get(reverse("user-list"), {"q": "peter"})
    assert [u.username for u in response.context["page_obj"]] == [world.pathologist2.username]
    response = client.get(reverse("user-list"), {"role": "lab_admin"})
    assert [u.username for u in response.context["page_obj"]] == [world.lab_admin.username]
