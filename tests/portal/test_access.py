"""Who may open what, for every portal view.

For each view: an allowed user, a user of the right organisation with the wrong role (403), a user
of an unrelated organisation, a pathologist of a laboratory the case was not referred to, and an
anonymous user (redirected to the login page). Objects outside the user's organisation or
laboratory answer 404, so ids don't leak; a role that never uses a page gets 403 whatever the id.
"""

import pytest
from django.urls import reverse

from cases.models import Case, Review
from tests.conftest import DEMO_PASSWORD

pytestmark = pytest.mark.django_db

# (view, url args from the fixtures, user attribute of world, expected status)
# "case" / "smear" / "patient" / "managed" pick the object in the URL.
MATRIX = [
    # Patients: clinicians of the site only.
    ("patient-list", None, "clinician", 200),
    ("patient-list", None, "site_admin", 403),
    ("patient-list", None, "pathologist", 403),
    ("patient-list", None, "other_pathologist", 403),
    ("patient-create", None, "clinician", 200),
    ("patient-create", None, "site_admin", 403),
    ("patient-create", None, "other_pathologist", 403),
    ("patient-detail", "patient", "clinician", 200),
    ("patient-detail", "patient", "colleague", 200),
    ("patient-detail", "patient", "site_admin", 403),
    ("patient-detail", "patient", "outsider", 404),
    ("patient-detail", "patient", "pathologist", 403),
    ("patient-detail", "patient", "other_pathologist", 403),
    # Case list: clinicians and pathologists, each seeing their own.
    ("case-list", None, "clinician", 200),
    ("case-list", None, "pathologist", 200),
    ("case-list", None, "site_admin", 403),
    ("case-list", None, "lab_admin", 403),
    ("case-list", None, "outsider", 200),
    ("case-list", None, "other_pathologist", 200),
    # New case: clinicians only; another organisation's patient is invisible.
    ("case-create", None, "clinician", 200),
    ("case-create", "patient-query", "clinician", 200),
    ("case-create", None, "site_admin", 403),
    ("case-create", None, "pathologist", 403),
    ("case-create", "patient-query", "outsider", 404),
    ("case-create", None, "other_pathologist", 403),
    # Case detail.
    ("case-detail", "case", "clinician", 200),
    ("case-detail", "case", "colleague", 200),
    ("case-detail", "case", "pathologist", 200),
    ("case-detail", "case", "site_admin", 403),
    ("case-detail", "case", "lab_admin", 403),
    ("case-detail", "case", "outsider", 404),
    ("case-detail", "case", "other_pathologist", 404),
    # Smear image: the same check as the case.
    ("smear-image", "smear", "clinician", 200),
    ("smear-image", "smear", "pathologist", 200),
    ("smear-image", "smear", "site_admin", 403),
    ("smear-image", "smear", "lab_admin", 403),
    ("smear-image", "smear", "outsider", 404),
    ("smear-image", "smear", "other_pathologist", 404),
    # Review page: the case's laboratory's pathologists; a clinician who sees the case gets 403.
    ("case-review", "case", "pathologist", 200),
    ("case-review", "case", "pathologist2", 200),
    ("case-review", "case", "clinician", 403),
    ("case-review", "case", "lab_admin", 403),
    ("case-review", "case", "outsider", 404),
    ("case-review", "case", "other_pathologist", 404),
    # Review queue: pathologists.
    ("review-queue", None, "pathologist", 200),
    ("review-queue", None, "lab_admin", 403),
    ("review-queue", None, "clinician", 403),
    ("review-queue", None, "other_pathologist", 200),
    # Audit trail: lab admins.
    ("audit-log", None, "lab_admin", 200),
    ("audit-log", None, "site_admin", 200),
    ("audit-log", None, "pathologist", 403),
    ("audit-log", None, "outsider", 403),
    ("audit-log", None, "other_pathologist", 403),
    # Users: lab admins, their own organisation only.
    ("user-list", None, "lab_admin", 200),
    ("user-list", None, "pathologist", 403),
    ("user-list", None, "outsider", 403),
    ("user-list", None, "other_pathologist", 403),
    ("user-create", None, "lab_admin", 200),
    ("user-create", None, "pathologist", 403),
    ("user-create", None, "outsider", 403),
    ("user-create", None, "other_pathologist", 403),
    ("user-edit", "managed", "lab_admin", 200),
    ("user-edit", "managed", "pathologist2", 403),
    ("user-edit", "managed", "site_admin", 404),
    ("user-edit", "managed", "outsider", 403),
    ("user-edit", "managed", "other_pathologist", 403),
]

VIEWS_WITH_OBJECTS = {
    "patient-detail": "patient",
    "case-detail": "case",
    "case-review": "case",
    "smear-image": "smear",
    "user-edit": "managed",
}
ALL_VIEWS = sorted({row[0] for row in MATRIX})


def url_for(name, target, world, case):
    if target is None:
        return reverse(name)
    if target == "patient-query":
        return reverse(name) + f"?patient={world.patient.pk}"
    pk = {
        "patient": world.patient.pk,
        "case": case.pk,
        "smear": case.smears.get().pk if case else None,
        "managed": world.pathologist.pk,
    }[target]
    return reverse(name, args=[pk])


@pytest.mark.parametrize("name,target,who,expected", MATRIX, ids=[f"{r[0]}-{r[2]}" for r in MATRIX])
def test_access_matrix(login, world, case, name, target, who, expected):
    client = login(getattr(world, who))
    response = client.get(url_for(name, target, world, case))
    assert response.status_code == expected


@pytest.mark.parametrize("name", ALL_VIEWS)
def test_anonymous_is_sent_to_login(client, world, case, name):
    url = url_for(name, VIEWS_WITH_OBJECTS.get(name), world, case)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_every_portal_view_is_in_the_matrix():
    from django.urls import get_resolver

    portal = {
        "patient-list",
        "patient-create",
        "patient-detail",
        "case-list",
        "case-create",
        "case-detail",
        "smear-image",
        "case-review",
        "review-queue",
        "audit-log",
        "user-list",
        "user-create",
        "user-edit",
    }
    names = {name for name in get_resolver().reverse_dict if isinstance(name, str)}
    assert portal <= names
    assert portal == set(ALL_VIEWS)


def test_unknown_ids_are_404_not_500(login, world):
    client = login(world.pathologist)
    for name in ("case-detail", "case-review", "smear-image"):
        assert client.get(reverse(name, args=[999999])).status_code == 404


def test_lists_do_not_show_other_organisations(login, world, case):
    client = login(world.outsider)
    assert case.reference not in client.get(reverse("case-list")).content.decode()
    assert world.patient.mrn not in client.get(reverse("patient-list")).content.decode()
    client = login(world.other_pathologist)
    assert case.reference not in client.get(reverse("case-list")).content.decode()
    assert case.reference not in client.get(reverse("review-queue")).content.decode()


# --- Writes: wrong role on a visible object is 403, invisible is 404 --------------------------


@pytest.mark.parametrize(
    "who,expected",
    [("clinician", 403), ("site_admin", 403), ("lab_admin", 403), ("outsider", 404), ("other_pathologist", 404)],
)
def test_signature_post_by_wrong_user(login, world, case, who, expected):
    client = login(getattr(world, who))
    response = client.post(
        reverse("case-review", args=[case.pk]),
        {"action": "sign", "sign-password": DEMO_PASSWORD, "sign-diagnosis": "pre_b"},
    )
    assert response.status_code == expected
    case.refresh_from_db()
    assert case.status != Case.Status.SIGNED
    assert not Review.objects.filter(case=case).exists()


def test_signature_post_anonymous(client, case):
    response = client.post(
        reverse("case-review", args=[case.pk]),
        {"action": "sign", "sign-password": DEMO_PASSWORD, "sign-diagnosis": "pre_b"},
    )
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Review.objects.filter(case=case).exists()


@pytest.mark.parametrize("who,expected", [("clinician", 403), ("outsider", 404), ("other_pathologist", 404)])
def test_amendment_post_by_wrong_user(login, world, signed_case, who, expected):
    client = login(getattr(world, who))
    response = client.post(
        reverse("case-review", args=[signed_case.pk]),
        {
            "action": "amend",
            "amend-password": DEMO_PASSWORD,
            "amend-diagnosis": "pro_b",
            "amend-reason": "Looks different",
        },
    )
    assert response.status_code == expected
    assert signed_case.diagnoses.count() == 1


@pytest.mark.parametrize("who", ["pathologist", "site_admin", "other_pathologist"])
def test_patient_register_post_by_wrong_role(login, world, who):
    from cases.models import Patient

    client = login(getattr(world, who))
    response = client.post(
        reverse("patient-create"),
        {
            "mrn": "X-1",
            "given_name": "A",
            "family_name": "B",
            "sex": "F",
            "date_of_birth": "2010-01-01",
        },
    )
    assert response.status_code == 403
    assert not Patient.objects.filter(mrn="X-1").exists()


def test_case_submit_post_by_wrong_role(login, world):
    from tests.conftest import smear_upload

    client = login(world.pathologist)
    response = client.post(
        reverse("case-create"),
        {
            "patient": world.patient.pk,
            "priority": "routine",
            "images": [smear_upload()],
        },
    )
    assert response.status_code == 403
    assert not Case.objects.exists()


def test_case_submit_with_another_organisations_patient(login, world):
    from tests.conftest import smear_upload

    client = login(world.outsider)
    response = client.post(
        reverse("case-create"),
        {
            "patient": world.patient.pk,
            "priority": "routine",
            "images": [smear_upload()],
        },
    )
    assert response.status_code == 200  # the form refuses: that patient is not a choice
    assert "patient" in response.context["form"].errors
    assert not Case.objects.exists()


def test_user_management_posts_across_organisations(login, world):
    client = login(world.site_admin)
    response = client.post(reverse("user-edit", args=[world.pathologist.pk]), {"action": "deactivate"})
    assert response.status_code == 404
    world.pathologist.refresh_from_db()
    assert world.pathologist.is_active
    client = login(world.pathologist)
    response = client.post(reverse("user-edit", args=[world.pathologist2.pk]), {"action": "deactivate"})
    assert response.status_code == 403
    world.pathologist2.refresh_from_db()
    assert world.pathologist2.is_active


def test_logout_requires_post(login, world):
    client = login(world.clinician)
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert client.get(reverse("case-list")).status_code == 302
