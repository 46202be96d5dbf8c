"""Lab admins manage the users of their own organisation, never another organisation's."""

import pytest
from django.urls import reverse

from accounts.models import User
from audit.models import AuditEvent

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
    response = client.post(
        reverse("user-create"),
        {
            "username": "nina_new",
            "first_name": "Nina",
            "last_name": "New",
            "email": "nina@example.org",
            "role": "pathologist",
            "password1": STRONG,
            "password2": STRONG,
        },
    )
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
    data = {"first_name": "A", "last_name": "B", "password1": STRONG, "password2": STRONG}
    # An unknown role is a malformed request: the form refuses it before any rule is checked.
    response = client.post(reverse("user-create"), {**data, "username": "fresh_name", "role": "superuser"})
    assert "role" in response.context["form"].errors
    # The rules (shared with the API) name every problem at once: the username is taken whatever
    # its case, and a reading laboratory has no clinicians.
    response = client.post(
        reverse("user-create"), {**data, "username": world.clinician.username.upper(), "role": "clinician"}
    )
    errors = response.context["form"].errors
    assert "role" in errors and "username" in errors
    assert not User.objects.filter(first_name="A").exists()


def test_change_role_and_deactivate(login, world):
    client = login(world.lab_admin)
    response = client.post(
        reverse("user-edit", args=[world.pathologist2.pk]),
        {
            "first_name": "Peter",
            "last_name": "Tester",
            "email": "",
            "role": "lab_admin",
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    world.pathologist2.refresh_from_db()
    assert world.pathologist2.role == "lab_admin"
    event = AuditEvent.objects.filter(action="changed", detail__username=world.pathologist2.username).get()
    assert event.detail["changes"] == {"role": ["pathologist", "lab_admin"]}  # [before, after], as from the API

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
    client.post(
        reverse("user-edit", args=[world.pathologist.pk]),
        {
            "first_name": "Paula",
            "last_name": "Tester",
            "role": "pathologist",
            "is_active": "on",
            "password1": STRONG,
            "password2": STRONG,
        },
    )
    world.pathologist.refresh_from_db()
    assert world.pathologist.check_password(STRONG)


def test_admin_cannot_lock_themselves_out(login, world):
    client = login(world.lab_admin)
    response = client.post(reverse("user-edit", args=[world.lab_admin.pk]), {"action": "deactivate"}, follow=True)
    assert "You cannot deactivate your own account." in response.content.decode()
    client.post(
        reverse("user-edit", args=[world.lab_admin.pk]),
        {
            "first_name": "Lars",
            "last_name": "Admin",
            "role": "clinician",  # is_active omitted
        },
    )
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
        response = client.post(
            url, {"first_name": "Clara", "last_name": "Tester", "role": "lab_admin", "is_active": "on"}
        )
    assert response.status_code == 404
    world.clinician.refresh_from_db()
    assert world.clinician.first_name == "Clara"
    assert world.clinician.is_active and world.clinician.role == "clinician"


def test_created_users_always_join_the_admins_organisation(login, world):
    login(world.lab_admin).post(
        reverse("user-create"),
        {
            "username": "sneaky",
            "first_name": "S",
            "last_name": "N",
            "role": "pathologist",
            "organisation": world.other_site.pk,
            "is_superuser": "on",
            "is_staff": "on",
            "password1": STRONG,
            "password2": STRONG,
        },
    )
    sneaky = User.objects.get(username="sneaky")
    assert sneaky.organisation == world.lab
    assert not sneaky.is_superuser and not sneaky.is_staff


def test_user_list_search_and_role_filter(login, world):
    client = login(world.lab_admin)
    response = client.get(reverse("user-list"), {"q": "peter"})
    assert [u.username for u in response.context["page_obj"]] == [world.pathologist2.username]
    response = client.get(reverse("user-list"), {"role": "lab_admin"})
    assert [u.username for u in response.context["page_obj"]] == [world.lab_admin.username]


# --------------------------------------------------------------------------------------------
# The screens obey the same rules as the API (both call accounts.services)


@pytest.mark.parametrize(
    "admin, role",
    [("lab_admin", "clinician"), ("site_admin", "pathologist")],  # a reading lab, a referring site
)
def test_create_refuses_a_role_that_does_not_suit_the_organisation(login, world, admin, role):
    admin = getattr(world, admin)
    response = login(admin).post(
        reverse("user-create"),
        {
            "username": "wrong_place",
            "first_name": "Wanda",
            "last_name": "Wrong",
            "role": role,
            "password1": STRONG,
            "password2": STRONG,
        },
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert "role" in form.errors
    assert f"cannot belong to {admin.organisation.name}" in " ".join(form.non_field_errors())
    assert not User.objects.filter(username="wrong_place").exists()
    assert not AuditEvent.objects.filter(detail__username="wrong_place").exists()


def test_edit_refuses_a_role_that_does_not_suit_the_organisation(login, world):
    response = login(world.lab_admin).post(
        reverse("user-edit", args=[world.pathologist2.pk]),
        {
            "first_name": "Peter",
            "last_name": "Tester",
            "email": "",
            "role": "clinician",
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    assert "role" in response.context["form"].errors
    world.pathologist2.refresh_from_db()
    assert world.pathologist2.role == "pathologist"
    assert not AuditEvent.objects.filter(action="changed").exists()


def test_screen_and_api_refuse_with_the_same_words(login, world):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(world.lab_admin)
    body = api.patch(f"/api/users/{world.pathologist2.pk}/", {"role": "clinician"}, format="json").json()
    response = login(world.lab_admin).post(
        reverse("user-edit", args=[world.pathologist2.pk]),
        {
            "first_name": "Peter",
            "last_name": "Tester",
            "role": "clinician",
            "is_active": "on",
        },
    )
    form = response.context["form"]
    assert body["error"]["message"] in form.non_field_errors()
    assert body["error"]["details"]["role"] == form.errors["role"]


def test_role_select_offers_only_the_roles_that_suit_the_organisation(login, world):
    client = login(world.lab_admin)
    offered = [
        value for value, _label in client.get(reverse("user-create")).context["form"].fields["role"].widget.choices
    ]
    assert offered == ["pathologist", "lab_admin"]
    login(world.site_admin)
    offered = [
        value for value, _label in client.get(reverse("user-create")).context["form"].fields["role"].widget.choices
    ]
    assert offered == ["clinician", "lab_admin"]


def test_edit_select_keeps_a_current_role_that_no_longer_suits(login, world):
    # A clinician left over in the laboratory (say the organisation's kind changed): the select
    # still shows their role, so saving other fields never changes it by accident.
    leftover = User.objects.create_user(
        "lena_leftover",
        password=STRONG,
        organisation=world.lab,
        role="clinician",
        first_name="Lena",
        last_name="Leftover",
    )
    client = login(world.lab_admin)
    form = client.get(reverse("user-edit", args=[leftover.pk])).context["form"]
    assert "clinician" in [value for value, _label in form.fields["role"].widget.choices]
    response = client.post(
        reverse("user-edit", args=[leftover.pk]),
        {
            "first_name": "Lena",
            "last_name": "Left",
            "role": "clinician",
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    leftover.refresh_from_db()
    assert (leftover.role, leftover.last_name) == ("clinician", "Left")


def test_deactivating_on_the_screen_revokes_api_tokens(login, world):
    from rest_framework.authtoken.models import Token

    Token.objects.create(user=world.pathologist2)
    login(world.lab_admin).post(reverse("user-edit", args=[world.pathologist2.pk]), {"action": "deactivate"})
    assert not Token.objects.filter(user=world.pathologist2).exists()
    event = AuditEvent.objects.get(action="changed", detail__username=world.pathologist2.username)
    assert event.detail["changes"] == {"is_active": [True, False]}


def test_weak_password_reset_is_refused_under_the_password_field(login, world):
    response = login(world.lab_admin).post(
        reverse("user-edit", args=[world.pathologist.pk]),
        {
            "first_name": "Paula",
            "last_name": "Tester",
            "role": "pathologist",
            "is_active": "on",
            "password1": "short",
            "password2": "short",
        },
    )
    assert "password1" in response.context["form"].errors
    world.pathologist.refresh_from_db()
    assert not world.pathologist.check_password("short")


def test_saving_an_unchanged_form_records_nothing(login, world):
    response = login(world.lab_admin).post(
        reverse("user-edit", args=[world.pathologist.pk]),
        {
            "first_name": "Paula",
            "last_name": "Tester",
            "email": "",
            "role": "pathologist",
            "is_active": "on",
        },
        follow=True,
    )
    assert "Nothing changed." in response.content.decode()
    assert not AuditEvent.objects.filter(action="changed").exists()


def test_non_admins_get_403(login, world):
    client = login(world.pathologist)
    assert client.get(reverse("user-list")).status_code == 403
    assert client.post(reverse("user-create"), {"username": "x"}).status_code == 403
    assert client.post(reverse("user-edit", args=[world.pathologist2.pk]), {"action": "deactivate"}).status_code == 403
