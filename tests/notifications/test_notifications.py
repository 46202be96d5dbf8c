"""Notifications: who is told what (in-app), the badge and list, the API, and e-mails (locmem)."""

import pytest
from django.core import mail
from django.urls import reverse

from tests.conftest import smear_upload
from tests.reports.conftest import amend, sign

pytestmark = pytest.mark.django_db


def titles(user):
    from notifications.models import Notification

    return [n.title for n in Notification.objects.filter(recipient=user).order_by("pk")]


@pytest.fixture
def eager_celery(monkeypatch):
    from telediag.celery import app

    monkeypatch.setattr(app.conf, "task_always_eager", True)
    return app


def test_signature_and_amendment_tell_the_sites_clinicians(world):
    case = world.submit_case()
    sign(case, world.pathologist, diagnosis="pre_b")
    amend(case, world.pathologist2, diagnosis="pro_b")
    expected = [f"{case.reference} signed: Pre-B ALL", f"{case.reference} amended: Pro-B ALL (was Pre-B ALL)"]
    assert titles(world.clinician) == expected  # the submitter
    assert titles(world.colleague) == expected  # the site's other clinicians
    # Nobody at the laboratory or elsewhere hears of it.
    for user in (world.pathologist, world.pathologist2, world.outsider, world.site_admin, world.other_pathologist):
        assert titles(user) == []


def test_an_urgent_case_tells_the_laboratorys_pathologists(world):
    routine = world.submit_case()
    urgent = world.submit_case(priority="urgent")
    expected = [f"Urgent case {urgent.reference} from St Mary's Clinic"]
    assert titles(world.pathologist) == expected
    assert titles(world.pathologist2) == expected
    assert titles(world.other_pathologist) == [] and titles(world.lab_admin) == []
    assert routine.reference not in " ".join(titles(world.pathologist))


def test_failed_analysis_tells_the_submitter_once(world):
    from inference.models import AnalysisJob
    from inference.services import job_fail
    from training.models import ModelVersion

    version = ModelVersion.objects.create(name="m", architecture="a", file_path="x", sha256="0" * 64)
    case = world.submit_case(files=[smear_upload("a.png"), smear_upload("b.png")])
    jobs = [
        AnalysisJob.objects.create(smear=smear, model_version=version, status=AnalysisJob.Status.RUNNING)
        for smear in case.smears.all()
    ]
    assert job_fail(jobs[0].pk, "The image file is unreadable.")
    assert job_fail(jobs[1].pk, "The image file is unreadable.")
    assert not job_fail(jobs[1].pk, "again")  # already failed: no second signal
    assert titles(world.clinician) == [f"Analysis failed for {case.reference}"]
    assert titles(world.colleague) == []


def test_badge_list_and_mark_read(client, world):
    case = world.submit_case()
    sign(case, world.pathologist)
    world.submit_case(priority="urgent")
    client.force_login(world.clinician)
    page = client.get(reverse("case-list")).content.decode()
    assert 'data-testid="notification-count">1<' in page

    listing = client.get(reverse("notification-list")).content.decode()
    assert f"{case.reference} signed: Pre-B ALL" in listing
    assert "Urgent case" not in listing  # the pathologists' notice, not the clinician's
    notification = world.clinician.notifications.get()
    response = client.post(
        reverse("notification-mark-read"), {"id": notification.pk, "next": reverse("notification-list")}
    )
    assert response.status_code == 302 and response["Location"] == reverse("notification-list")
    notification.refresh_from_db()
    assert notification.read_at is not None
    assert 'data-testid="notification-count"' not in client.get(reverse("case-list")).content.decode()
    # An outside "next" is not followed; another user's id changes nothing.
    other = world.pathologist.notifications.get()
    response = client.post(reverse("notification-mark-read"), {"id": other.pk, "next": "https://evil.example/"})
    assert response["Location"] == reverse("notification-list")
    other.refresh_from_db()
    assert other.read_at is None
    assert client.post(reverse("notification-mark-read"), {"id": "x"}).status_code == 302
    # A "next" that is not a path (redirect() took it for a URL name: a server error) is ignored.
    for target in ("0", "notification-list", "é漢字"):
        response = client.post(reverse("notification-mark-read"), {"next": target})
        assert response.status_code == 302 and response["Location"] == reverse("notification-list")


def test_notifications_api(client, world):
    case = world.submit_case()
    sign(case, world.pathologist)
    amend(case, world.pathologist)
    client.force_login(world.clinician)
    response = client.get(reverse("api-notifications"))
    assert response.status_code == 200
    assert response["X-Unread-Count"] == "2"
    body = response.json()
    assert [item["kind"] for item in body["results"]] == ["case_amended", "case_signed"]
    assert body["results"][0]["case_reference"] == case.reference
    first = body["results"][0]["id"]
    marked = client.post(reverse("api-notifications-read"), {"ids": [first]}, content_type="application/json")
    assert marked.json() == {"marked": 1, "unread": 1}
    unread = client.get(reverse("api-notifications"), {"unread": "1"}).json()["results"]
    assert [item["kind"] for item in unread] == ["case_signed"]
    assert client.post(reverse("api-notifications-read"), {}, content_type="application/json").json() == {
        "marked": 1,
        "unread": 0,
    }
    bad = client.post(reverse("api-notifications-read"), {"ids": ["x"]}, content_type="application/json")
    assert bad.status_code == 400
    client.logout()
    assert client.get(reverse("api-notifications")).status_code == 401


def test_emails_when_switched_on(world, settings, eager_celery, django_capture_on_commit_callbacks):
    settings.NOTIFICATION_EMAILS = True
    settings.EMAIL_MODE = "smtp"  # pytest-django keeps the locmem backend: mail.outbox
    settings.PUBLIC_URL = "https://telediag.example"
    world.clinician.email = "clara@clinic.example"
    world.clinician.save()
    case = world.submit_case()
    with django_capture_on_commit_callbacks(execute=True):
        sign(case, world.pathologist)
    assert len(mail.outbox) == 1  # the colleague has no address
    message = mail.outbox[0]
    assert message.to == ["clara@clinic.example"]
    assert message.subject == f"Telediag: case {case.reference} is signed"
    assert f"https://telediag.example/cases/{case.pk}/" in message.body
    # No patient data in an e-mail.
    for secret in ("Alex", "Patient", "MRN-1", "Pre-B"):
        assert secret not in message.body and secret not in message.subject
    assert world.clinician.notifications.get().emailed_at is not None


@pytest.mark.parametrize("notification_emails, email_mode", [(False, "smtp"), (True, "off")])
def test_no_emails_when_switched_off(
    world, settings, eager_celery, django_capture_on_commit_callbacks, notification_emails, email_mode
):
    settings.NOTIFICATION_EMAILS = notification_emails
    settings.EMAIL_MODE = email_mode
    world.clinician.email = "clara@clinic.example"
    world.clinician.save()
    case = world.submit_case()
    with django_capture_on_commit_callbacks(execute=True):
        sign(case, world.pathologist)
    assert mail.outbox == []
    assert world.clinician.notifications.count() == 1
