"""The account rules, tested once where they live: accounts.services and accounts.selectors.

The portal (accounts.views) and the API (accounts.api) only call these functions; their own tests
check the wiring (form and serializer shape, status codes, messages on the page).
"""

import pytest
from django.http import Http404
from rest_framework.authtoken.models import Token

from accounts import services
from accounts.models import Organisation, User
from accounts.selectors import get_managed_user, users_managed_by
from audit.models import AuditEvent
from core.errors import DomainError, NotAllowed
from tests.conftest import _user

pytestmark = pytest.mark.django_db

STRONG = "Leukocyte-Morphology-42"


def create(admin, **overrides):
    values = {
        "username": "nina_new",
        "password": STRONG,
        "role": "pathologist",
        "first_name": "Nina",
        "last_name": "New",
    }
    values.update(overrides)
    return services.user_create(admin=admin, **values)


def refusal(call, *args, **kwargs):
    with pytest.raises(DomainError) as info:
        call(*args, **kwargs)
    assert type(info.value) is DomainError  # a 400, not a 403
    return info.value


@pytest.fixture
def mixed(world):
    """An organisation that both refers and reads, with its admin."""
    organisation = Organisation.objects.create(name="Riverside Hospital", kind="both")
    return _user("rita_riversideadmin", organisation, "lab_admin")


# --------------------------------------------------------------------------------------------
# Selectors


def test_users_managed_by_is_the_admins_organisation_without_superusers(world):
    User.objects.create_superuser("root", "root@example.org", "x-very-long-password", organisation=world.lab)
    assert set(users_managed_by(world.lab_admin)) == {world.pathologist, world.pathologist2, world.lab_admin}
    assert set(users_managed_by(world.site_admin)) == {world.clinician, world.colleague, world.site_admin}


@pytest.mark.parametrize("name", ["clinician", "pathologist"])
def test_users_managed_by_is_empty_for_non_admins(world, name):
    assert not users_managed_by(getattr(world, name)).exists()


def test_users_managed_by_is_empty_for_anonymous(world):
    from django.contrib.auth.models import AnonymousUser

    assert not users_managed_by(AnonymousUser()).exists()


def test_users_managed_by_searches_every_word_and_filters_by_role(world):
    assert list(users_managed_by(world.lab_admin, search="peter tester")) == [world.pathologist2]
    assert list(users_managed_by(world.lab_admin, search="PAULA")) == [world.pathologist]
    assert list(users_managed_by(world.lab_admin, role="lab_admin")) == [world.lab_admin]
    assert not users_managed_by(world.lab_admin, search="clara").exists()  # another organisation's


def test_get_managed_user(world):
    assert get_managed_user(world.lab_admin, world.pathologist.pk) == world.pathologist
    assert get_managed_user(world.lab_admin, str(world.pathologist.pk)) == world.pathologist


@pytest.mark.parametrize("pk", ["other organisation", "superuser", "missing", "garbage", None])
def test_get_managed_user_is_404_for_anyone_else(world, pk):
    root = User.objects.create_superuser("root", "root@example.org", "x-very-long-password", organisation=world.lab)
    pk = {"other organisation": world.clinician.pk, "superuser": root.pk, "missing": 10**9, "garbage": "x"}.get(pk, pk)
    with pytest.raises(Http404):
        get_managed_user(world.lab_admin, pk)


def test_get_managed_user_is_404_for_non_admins(world):
    with pytest.raises(Http404):
        get_managed_user(world.pathologist, world.pathologist2.pk)


# --------------------------------------------------------------------------------------------
# Creating


def test_create_joins_the_admins_organisation_and_is_audited(world):
    user = create(world.lab_admin, username="  nina_new ", email=" Nina@EXAMPLE.org ", request=None)
    user.refresh_from_db()
    assert (user.username, user.organisation, user.role) == ("nina_new", world.lab, "pathologist")
    assert (user.is_staff, user.is_superuser, user.is_active) == (False, False, True)
    assert user.email == "Nina@example.org"
    assert user.check_password(STRONG)
    event = AuditEvent.objects.get(action="created")
    assert event.actor == world.lab_admin and event.actor_organisation_id == world.lab.pk
    assert event.detail == {"object": "user", "user_id": user.pk, "username": "nina_new", "role": "pathologist"}


@pytest.mark.parametrize(
    "kind, role, fits",
    [
        ("referring", "clinician", True),
        ("referring", "lab_admin", True),
        ("referring", "pathologist", False),  # no pathologists in a pure referring site
        ("reading", "pathologist", True),
        ("reading", "lab_admin", True),
        ("reading", "clinician", False),  # no clinicians in a pure reading laboratory
        ("both", "clinician", True),
        ("both", "pathologist", True),
        ("both", "lab_admin", True),
    ],
)
def test_roles_must_suit_the_organisations_kind(world, mixed, kind, role, fits):
    admin = {"referring": world.site_admin, "reading": world.lab_admin, "both": mixed}[kind]
    if fits:
        assert create(admin, role=role).role == role
    else:
        error = refusal(create, admin, role=role)
        assert set(error.details) == {"role"}
        assert "cannot belong to" in error.message and admin.organisation.name in error.message
        assert not User.objects.filter(username="nina_new").exists()


def test_allowed_roles(world, mixed):
    assert services.allowed_roles(world.lab) == ["pathologist", "lab_admin"]
    assert services.allowed_roles(world.site) == ["clinician", "lab_admin"]
    assert services.allowed_roles(mixed.organisation) == ["clinician", "pathologist", "lab_admin"]


def test_an_unknown_role_is_refused(world):
    assert set(refusal(create, world.lab_admin, role="superuser").details) == {"role"}


@pytest.mark.parametrize("username", ["paula_pathologist", "Paula_Pathologist", " PAULA_PATHOLOGIST "])
def test_usernames_are_unique_whatever_their_case(world, username):
    error = refusal(create, world.lab_admin, username=username)
    assert error.details == {"username": ["Already taken."]}


def test_usernames_are_unique_across_organisations(world):
    assert set(refusal(create, world.lab_admin, username="Clara_Clinician").details) == {"username"}


@pytest.mark.parametrize("username", ["", "   ", "bad name!", "x" * 151])
def test_malformed_usernames_are_refused(world, username):
    assert set(refusal(create, world.lab_admin, username=username).details) == {"username"}


@pytest.mark.parametrize("password", ["", "short", "password123", "12345678901234", "nina_new_nina"])
def test_passwords_follow_the_password_validators(world, password):
    error = refusal(create, world.lab_admin, password=password)
    assert set(error.details) == {"password"} and error.details["password"]


def test_every_problem_is_named_at_once(world):
    error = refusal(create, world.lab_admin, username="PAULA_pathologist", role="clinician", password="short")
    assert set(error.details) == {"username", "role", "password"}
    assert "taken" in error.message and "clinician" in error.message and "password" in error.message


@pytest.mark.parametrize("name", ["clinician", "pathologist", "outsider"])
def test_only_lab_admins_create_users(world, name):
    with pytest.raises(NotAllowed):
        create(getattr(world, name), role="clinician")
    assert not User.objects.filter(username="nina_new").exists()


def test_refusals_record_nothing(world):
    refusal(create, world.lab_admin, role="clinician")
    assert not AuditEvent.objects.exists()


# --------------------------------------------------------------------------------------------
# Updating


def test_role_change_is_audited_as_before_and_after(world):
    user = services.user_update(admin=world.lab_admin, user=world.pathologist2, role="lab_admin")
    assert user.role == "lab_admin"
    world.pathologist2.refresh_from_db()
    assert world.pathologist2.role == "lab_admin"
    event = AuditEvent.objects.get(action="changed")
    assert event.actor == world.lab_admin
    assert event.detail == {
        "object": "user",
        "user_id": world.pathologist2.pk,
        "username": "peter_pathologist",
        "changes": {"role": ["pathologist", "lab_admin"]},
    }


def test_role_change_must_suit_the_organisation(world):
    error = refusal(services.user_update, admin=world.lab_admin, user=world.pathologist2, role="clinician")
    assert set(error.details) == {"role"}
    world.pathologist2.refresh_from_db()
    assert world.pathologist2.role == "pathologist"
    assert not AuditEvent.objects.exists()


def test_names_and_email(world):
    services.user_update(
        admin=world.lab_admin,
        user=world.pathologist2,
        first_name=" Pete ",
        last_name="Tester",
        email="pete@example.org",
    )
    world.pathologist2.refresh_from_db()
    assert (world.pathologist2.first_name, world.pathologist2.email) == ("Pete", "pete@example.org")
    assert AuditEvent.objects.get().detail["changes"] == {
        "first_name": ["Peter", "Pete"],
        "email": ["", "pete@example.org"],
    }


def test_deactivation_revokes_api_tokens_and_reactivation_restores_sign_in(world):
    Token.objects.create(user=world.pathologist2)
    services.user_set_active(admin=world.lab_admin, user=world.pathologist2, is_active=False)
    world.pathologist2.refresh_from_db()
    assert not world.pathologist2.is_active
    assert not Token.objects.filter(user=world.pathologist2).exists()
    services.user_set_active(admin=world.lab_admin, user=world.pathologist2, is_active=True)
    world.pathologist2.refresh_from_db()
    assert world.pathologist2.is_active
    changes = [e.detail["changes"] for e in AuditEvent.objects.order_by("pk")]
    assert changes == [{"is_active": [True, False]}, {"is_active": [False, True]}]


def test_other_users_tokens_survive_a_deactivation(world):
    kept = Token.objects.create(user=world.pathologist)
    services.user_set_active(admin=world.lab_admin, user=world.pathologist2, is_active=False)
    assert Token.objects.filter(pk=kept.pk).exists()


def test_an_admin_cannot_lock_themselves_out(world):
    error = refusal(
        services.user_update, admin=world.lab_admin, user=world.lab_admin, role="pathologist", is_active=False
    )
    assert error.details == {
        "role": ["You cannot change your own role."],
        "is_active": ["You cannot deactivate your own account."],
    }
    world.lab_admin.refresh_from_db()
    assert world.lab_admin.is_active and world.lab_admin.role == "lab_admin"


def test_an_admin_may_edit_the_rest_of_their_own_account(world):
    services.user_update(
        admin=world.lab_admin,
        user=world.lab_admin,
        role="lab_admin",
        is_active=True,
        last_name="Admin",
        password=STRONG,
    )
    world.lab_admin.refresh_from_db()
    assert world.lab_admin.last_name == "Admin" and world.lab_admin.check_password(STRONG)


def test_password_reset_is_validated_and_audited_without_the_password(world):
    error = refusal(services.user_update, admin=world.lab_admin, user=world.pathologist2, password="short")
    assert set(error.details) == {"password"}
    # Similarity is judged against the names the same request sets.
    error = refusal(
        services.user_update,
        admin=world.lab_admin,
        user=world.pathologist2,
        first_name="Quintessential",
        password="Quintessential",
    )
    assert set(error.details) == {"password"}
    services.user_update(admin=world.lab_admin, user=world.pathologist2, password=STRONG)
    world.pathologist2.refresh_from_db()
    assert world.pathologist2.check_password(STRONG)
    event = AuditEvent.objects.get(action="changed")
    assert event.detail["changes"] == {} and event.detail["password_reset"] is True
    assert STRONG not in str(event.detail)
    # And the security event about the account whose password was reset (changed at next sign-in).
    reset = AuditEvent.objects.get(action="password_reset")
    assert reset.actor == world.pathologist2 and STRONG not in str(reset.detail)


def test_nothing_changed_records_nothing(world):
    services.user_update(
        admin=world.lab_admin, user=world.pathologist2, role="pathologist", is_active=True, first_name="Peter"
    )
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("name", ["clinician", "pathologist2"])
def test_only_lab_admins_update_users(world, name):
    with pytest.raises(NotAllowed):
        services.user_update(admin=getattr(world, name), user=world.pathologist, is_active=False)
    world.pathologist.refresh_from_db()
    assert world.pathologist.is_active


def test_another_organisations_users_and_superusers_are_out_of_reach(world):
    root = User.objects.create_superuser("root", "root@example.org", "x-very-long-password", organisation=world.lab)
    for target in (world.clinician, world.other_pathologist, root):
        with pytest.raises(NotAllowed):
            services.user_update(admin=world.lab_admin, user=target, is_active=False)
        target.refresh_from_db()
        assert target.is_active
    assert not AuditEvent.objects.exists()
