"""The audit trail page: filters, links to each case's trail, CSV export, one "viewed" per session."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit
from cases import audit_trail

pytestmark = pytest.mark.django_db


def events_of(response):
    return list(response.context["page_obj"])


def exported(response):
    assert response.status_code == 200, response
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="telediag-audit-')
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_filters_by_user_case_dates_and_event(login, world, case):
    other = world.submit_case()
    audit(AuditEvent.Action.VIEWED, actor=world.pathologist, case=case, page="case-review")
    audit(AuditEvent.Action.VIEWED, actor=world.pathologist2, case=other, page="case-review")
    old = audit(AuditEvent.Action.VIEWED, actor=world.pathologist, case=other, page="case-review")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    admin = login(world.lab_admin)
    url = reverse("audit-log")

    by_user = events_of(admin.get(url, {"user": "PAULA_pathologist"}))  # usernames match whatever the case
    assert by_user and {e.actor for e in by_user} == {world.pathologist}
    for reference in (case.reference, str(case.pk), case.reference.lower()):
        by_case = events_of(admin.get(url, {"case": reference}))
        assert by_case and {e.case_id for e in by_case} == {case.pk}
    combined = events_of(admin.get(url, {"user": world.pathologist.username, "case": other.reference}))
    assert [e.pk for e in combined] == [old.pk]
    today = timezone.localdate().isoformat()
    recent = events_of(admin.get(url, {"case": other.reference, "date_from": today, "date_to": today}))
    assert old.pk not in {e.pk for e in recent} and recent
    earlier = (timezone.localdate() - timedelta(days=10)).isoformat()
    dated = events_of(admin.get(url, {"case": other.reference, "date_from": earlier, "date_to": earlier}))
    assert [e.pk for e in dated] == [old.pk]
    submitted = events_of(admin.get(url, {"action": "submitted"}))
    assert submitted and {e.action for e in submitted} == {"submitted"}


@pytest.mark.parametrize(
    "query, message",
    [
        ({"user": "nobody-here"}, "No user has this username."),
        ({"case": "case seven"}, "Type a case reference such as TD-000123."),
        ({"date_from": "2026-02-10", "date_to": "2026-02-01"}, "The end date is before the start date."),
        ({"date_from": "10/02/2026x"}, "Enter a valid date."),
        ({"action": "deleted"}, "Select a valid choice."),
    ],
)
def test_bad_filters_are_a_400_that_says_why(login, world, query, message):
    admin = login(world.lab_admin)
    response = admin.get(reverse("audit-log"), query)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'aria-invalid="true"' in response.content.decode()
    assert admin.get(reverse("audit-log-csv"), query).status_code == 400


def test_each_row_links_to_its_case_trail_and_pages_keep_the_filters(login, world, case):
    for _ in range(55):
        audit(AuditEvent.Action.VIEWED, actor=world.pathologist, case=case, page="api-case")
    admin = login(world.lab_admin)
    response = admin.get(reverse("audit-log"), {"user": world.pathologist.username})
    page = response.content.decode()
    assert f'href="/audit/?case={case.reference}"' in page
    assert f'href="/audit/?user={world.pathologist.username}"' in page
    first = response.context["page_obj"]
    assert len(first) == 50 and first.older_token
    assert f"user={world.pathologist.username}&amp;before={first.older_token}" in page
    older = events_of(
        admin.get(reverse("audit-log"), {"user": world.pathologist.username, "before": first.older_token})
    )
    assert len(older) == 5 and {e.actor for e in older} == {world.pathologist}
    # The export link carries the filters, never the page position.
    assert f'href="/audit/export.csv?user={world.pathologist.username}"' in page


def test_csv_export_streams_the_filtered_events_in_keyset_batches(login, world, case, monkeypatch):
    monkeypatch.setattr(audit_trail, "EXPORT_BATCH", 7)
    for i in range(20):
        audit(AuditEvent.Action.VIEWED, actor=world.pathologist, case=case, page="api-case", n=i)
    # Several events in the same instant across a batch boundary: none lost, none twice.
    same = timezone.now()
    AuditEvent.objects.filter(detail__n__in=[5, 6, 7, 8, 9]).update(created_at=same)
    # A medical record number is typed by people: one that reads as a spreadsheet formula is defused.
    formula = world.new_patient(mrn="=HYPERLINK(1)")
    audit(AuditEvent.Action.VIEWED, actor=world.pathologist, patient=formula, page="patient")
    admin = login(world.lab_admin)
    with CaptureQueriesContext(connection) as queries:
        rows = exported(admin.get(reverse("audit-log-csv"), {"user": world.pathologist.username, "action": "viewed"}))
    expected = list(AuditEvent.objects.filter(actor=world.pathologist, action="viewed").order_by("-created_at", "-pk"))
    assert len(rows) == 21 == len(expected)
    assert [r["details"] for r in rows] == [json.dumps(e.detail, sort_keys=True) for e in expected]
    assert rows[0]["patient_mrn"] == "'=HYPERLINK(1)" and rows[0]["case"] == ""
    assert {r["user"] for r in rows} == {world.pathologist.username}
    assert {r["case"] for r in rows[1:]} == {case.reference}
    assert {r["patient_mrn"] for r in rows[1:]} == {world.patient.mrn}
    assert list(rows[0]) == audit_trail.CSV_COLUMNS
    reads = [q["sql"] for q in queries.captured_queries if '"audit_auditevent"' in q["sql"]]
    assert len(reads) == 4 and all("LIMIT 7" in sql for sql in reads)  # 7 + 7 + 7 + 0: never all at once


def test_csv_export_is_for_lab_admins_and_their_organisation_only(login, world, case):
    from accounts.models import User

    assert login(world.pathologist).get(reverse("audit-log-csv")).status_code == 403
    assert login(None).get(reverse("audit-log-csv")).status_code == 302
    other_admin = User.objects.create_user(
        "hal_harbouradmin", password="x" * 12, organisation=world.other_site, role="lab_admin"
    )
    rows = exported(login(other_admin).get(reverse("audit-log-csv")))
    assert all(r["case"] == "" for r in rows)  # its own people's sign-ins only
    assert case.reference not in {r["case"] for r in rows}
    mine = exported(login(world.lab_admin).get(reverse("audit-log-csv"), {"case": case.reference}))
    assert mine and {r["action"] for r in mine} >= {"submitted"}


def test_viewed_is_recorded_once_per_case_per_session(login, world, case, client_for_token):
    def views():
        return AuditEvent.objects.filter(action="viewed", case=case).count()

    client = login(world.pathologist)
    for _ in range(3):
        assert client.get(reverse("case-detail", args=[case.pk])).status_code == 200
        assert client.get(reverse("case-review", args=[case.pk])).status_code == 200
    assert views() == 1
    other = world.submit_case()
    client.get(reverse("case-detail", args=[other.pk]))
    assert AuditEvent.objects.filter(action="viewed", case=other).count() == 1
    # A new session (signed in again) records the next view again.
    client = login(world.pathologist)
    client.get(reverse("case-review", args=[case.pk]))
    client.get(reverse("case-review", args=[case.pk]))
    assert views() == 2
    # Patients too.
    clinician = login(world.clinician)
    for _ in range(2):
        clinician.get(reverse("patient-detail", args=[world.patient.pk]))
    assert AuditEvent.objects.filter(action="viewed", patient=world.patient, case=None).count() == 1
    # Downloads are recorded every time, even after a view of the case in the same session.
    signed = world.submit_case()
    from cases.services import case_sign

    case_sign(signature_method="password", user=world.pathologist, case=signed, diagnosis="pre_b", comment="")
    clinician.get(reverse("case-detail", args=[signed.pk]))
    for _ in range(2):
        assert clinician.get(reverse("case-report-pdf", args=[signed.pk])).status_code == 200
    pages = list(AuditEvent.objects.filter(action="viewed", case=signed).values_list("detail__page", flat=True))
    assert sorted(pages) == ["case-detail", "report-pdf", "report-pdf"]
    # API reads are recorded every time too (and a token creates no session).
    from django.contrib.sessions.models import Session

    sessions = Session.objects.count()
    api = client_for_token(world.clinician)
    for _ in range(2):
        assert api.get(f"/api/cases/{case.pk}/").status_code == 200
    assert views() == 4
    assert Session.objects.count() == sessions


@pytest.fixture
def client_for_token():
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def make(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
        return client

    return make
