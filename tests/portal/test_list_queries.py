"""Every list reads a page in a fixed number of queries, whatever the rows hold and however many
there are (issue 19): no query per row (N+1), no count that grows with the page's contents.

Each list is filled with 25 mixed rows (every status, both priorities, 1–3 images, signed and
amended diagnoses, failed and finished analyses), then with 60 more; page 1 and a later page must
take exactly the number of queries stated here.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from audit.models import AuditEvent
from cases.models import Case, Review, Smear
from inference import flagging
from inference.models import AnalysisJob, Prediction
from training.models import ModelVersion

STATUSES = ["submitted", "analysing", "awaiting_review", "signed", "amended"]


def add_mixed_cases(world, count, start=0):
    """``count`` cases of world.site (referred to world.lab) with everything a list row may show."""
    version, _ = ModelVersion.objects.get_or_create(
        name="list-queries", defaults={"architecture": "mobilenetv2", "file_path": "x.keras", "sha256": "0" * 64}
    )
    now = timezone.now()
    for i in range(start, start + count):
        patient = world.patient if i % 3 else world.new_patient(mrn=f"MRN-L{i}", family_name=f"Family{i}")
        status = STATUSES[i % len(STATUSES)]
        final = status in ("signed", "amended")
        case = Case.objects.create(
            patient=patient,
            site=world.site,
            laboratory=world.lab,
            submitted_by=world.clinician,
            priority="urgent" if i % 4 == 0 else "routine",
            status=status,
            signed_by=world.pathologist if final else None,
            signed_at=now if final else None,
        )
        Case.objects.filter(pk=case.pk).update(created_at=now - timedelta(minutes=1000 - i))
        for n in range(1 + i % 3):
            smear = Smear.objects.create(
                case=case,
                image=f"smears/{i}-{n}.png",
                sha256=f"{i:032d}{n:032d}",
                width=64,
                height=48,
                format="PNG",
                size_bytes=100,
            )
            failed = n == 1
            job = AnalysisJob.objects.create(
                smear=smear,
                model_version=version,
                status="failed" if failed else "done",
                reason="The image could not be read." if failed else "",
                finished_at=now,
            )
            if not failed:
                Prediction.objects.create(
                    smear=smear,
                    model_version=version,
                    job=job,
                    label="pre_b",
                    probabilities={"pre_b": 0.9, "benign": 0.1},
                )
        flagging.case_flag_refresh(case.pk)  # as the worker does: the failed analyses flag the case
        if final:
            signature = Review.objects.create(
                case=case, kind="signature", diagnosis="pre_b", signed_by=world.pathologist, signed_at=now
            )
            if status == "amended":
                Review.objects.create(
                    case=case,
                    kind="amendment",
                    diagnosis="pro_b",
                    reason="Flow cytometry.",
                    supersedes=signature,
                    signed_by=world.pathologist2,
                    signed_at=now,
                )
        for actor in (world.clinician, world.pathologist):
            AuditEvent.objects.create(
                action="viewed",
                actor=actor,
                actor_organisation_id=actor.organisation_id,
                case=case,
                patient=patient,
                detail={"page": "case-detail"},
            )


def portal(client, user):
    client.force_login(user)
    return client


def api(client, user):
    token, _ = Token.objects.get_or_create(user=user)
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token.key}"
    return client


# (name, who, client maker, url of page 1, url of a later page or None, queries per page). Portal pages
# of pathologists and lab admins take one query more: django-otp loads the session's second-factor device.
LISTS = [
    # Portal pages include one count of the user's unread notifications (the navbar badge).
    ("clinician case list", "clinician", portal, "/cases/", "/cases/?page=2", 9),
    ("clinician case list, filtered", "clinician", portal, "/cases/?priority=routine", None, 9),
    ("pathologist case list", "pathologist", portal, "/cases/", "/cases/?page=2", 10),
    ("patient list", "clinician", portal, "/patients/", "/patients/?page=2", 8),
    # The patient's "viewed" event is written on the session's first visit only (audit.services).
    ("patient detail", "clinician", portal, "/patients/{patient}/", "/patients/{patient}/?page=2", 10),
    # + the referring sites (filter), the queue's counts, the rows' AI summaries (jobs, predictions);
    # a search by MRN reads the matching patients first (one query more)
    ("review queue", "pathologist", portal, "/review/", "/review/?page=2", 14),
    ("review queue, filtered", "pathologist", portal, "/review/?flagged=on&urgent=on&mine=", None, 14),
    ("review queue, search", "pathologist", portal, "/review/?q=MRN-1&date_from=2020-01-01", None, 15),
    ("audit trail", "lab_admin", portal, "/audit/", "older", 6),
    ("failed analyses", "pathologist", portal, "/analysis/failed/", "older-failed", 6),
    ("clinician case search", "clinician", portal, "/cases/?q=MRN-1", "/cases/?q=MRN-1&page=2", 10),
    ("api cases", "clinician", api, "/api/cases/", "next", 3),
    (
        "api cases, page numbers",
        "pathologist",
        api,
        "/api/cases/?page=1",
        "/api/cases/?page=2",
        5,
    ),  # capped count, page ids, rows, prefetches
    ("api review queue", "pathologist", api, "/api/review-queue/", "/api/review-queue/?page=2", 4),
    ("api audit events", "lab_admin", api, "/api/audit-events/", "next", 2),
    ("api analysis jobs", "pathologist", api, "/api/analysis/jobs/", "next", 2),
    ("api patients", "clinician", api, "/api/patients/", "/api/patients/?page=2", 3),
]


def _queries(client, url):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.content[:300])
    return len(captured), response


def _later_page(response, later):
    if later == "next":
        return response.json()["next"]
    if later == "older":
        return f"/audit/?before={response.context['page_obj'].older_token}"
    if later == "older-failed":
        return f"/analysis/failed/?before={response.context['page_obj'].older_token}"
    return later


@pytest.mark.parametrize("name, who, make, first, later, expected", LISTS, ids=[row[0] for row in LISTS])
def test_a_list_takes_a_fixed_number_of_queries(client, world, name, who, make, first, later, expected):
    add_mixed_cases(world, 25)
    client = make(client, getattr(world, who))
    url = first.format(patient=world.patient.pk)
    client.get(url)  # first request of a session: may load what later ones have cached
    count, response = _queries(client, url)
    rows = response.json()["results"] if response.get("Content-Type", "").startswith("application/json") else None
    assert rows is None or len(rows) >= 10
    assert count == expected, f"{name}: {count} queries with 25 mixed rows, expected {expected}"

    add_mixed_cases(world, 60, start=25)
    count, response = _queries(client, url)
    assert count == expected, f"{name}: {count} queries with 85 rows, expected {expected}"
    if later:
        next_url = _later_page(response, later).format(patient=world.patient.pk)
        count, _ = _queries(client, next_url)
        assert count == expected, f"{name}: {count} queries on a later page, expected {expected}"


def test_new_case_form_lists_a_bounded_number_of_patients(client, world):
    from cases.forms import CaseForm
    from cases.models import Patient

    for n in range(CaseForm.PATIENT_CHOICES + 5):
        world.new_patient(mrn=f"MRN-B{n:03d}")
    oldest = world.patient  # registered first: not among the most recent
    client.force_login(world.clinician)
    form = client.get("/cases/new/").context["form"]
    listed = [value for value, _ in form.fields["patient"].widget.choices if value]
    assert len(listed) == CaseForm.PATIENT_CHOICES and oldest.pk not in listed
    assert "most recently registered" in form.fields["patient"].help_text
    # opened from the patient's page, that patient is listed (and chosen)
    form = client.get("/cases/new/", {"patient": oldest.pk}).context["form"]
    assert oldest.pk in [value for value, _ in form.fields["patient"].widget.choices]
    # any visible patient is accepted, listed or not; another site's is not
    bound = CaseForm({"patient": oldest.pk, "priority": "routine"}, user=world.clinician)
    bound.is_valid()
    assert "patient" not in bound.errors
    stranger = Patient.objects.create(
        organisation=world.other_site,
        mrn="X-1",
        given_name="A",
        family_name="B",
        sex="F",
        date_of_birth="2010-01-01",
        created_by=world.outsider,
    )
    bound = CaseForm({"patient": stranger.pk, "priority": "routine"}, user=world.clinician)
    assert not bound.is_valid() and "patient" in bound.errors


@pytest.mark.parametrize("model", ["cases/case", "audit/auditevent", "cases/patient", "cases/review"])
def test_admin_lists_take_a_fixed_number_of_queries_and_cap_the_count(client, world, model, monkeypatch):
    from accounts.models import User
    from core import pagination

    admin = User.objects.create_superuser("root_admin", password="x" * 20)
    client.force_login(admin)
    url = f"/admin/{model}/"
    from core.admin import ReadOnlyAdmin

    monkeypatch.setattr(ReadOnlyAdmin, "list_per_page", 5)  # several pages in both states below
    add_mixed_cases(world, 25)
    client.get(url)
    first, response = _queries(client, url)
    add_mixed_cases(world, 60, start=25)
    second, _ = _queries(client, url)
    assert first == second, f"admin {model}: {first} then {second} queries"
    monkeypatch.setattr(pagination, "COUNT_CAP", 20)
    paginator = client.get(url).context["cl"].paginator
    assert paginator.count == 20 and paginator.count_capped
