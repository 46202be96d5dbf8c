"""Alerts: raised when a site's recent agreement drops or its images drift, once, e-mailed, acknowledged."""

import pytest

from audit.models import AuditEvent
from monitoring import alerts
from monitoring.models import MonitoringAlert
from monitoring.stats import wilson_interval
from tests.monitoring.conftest import analysed_case, make_version, sign


@pytest.fixture(autouse=True)
def small_window(settings):
    settings.MONITORING_WINDOW_CASES = 10
    settings.MONITORING_MIN_CASES = 5
    settings.MONITORING_DRIFT_ALERT = 0.25
    settings.MONITORING_ALERT_EMAILS = []


def signed(world, version, ai, diagnosis, capture, **kwargs):
    case = analysed_case(world, version, [ai], **kwargs)
    with capture(execute=True):  # the check runs once the signature is committed
        sign(world, case, diagnosis)
    return case


def test_alert_raised_when_agreement_drops_and_not_repeated(world, version, django_capture_on_commit_callbacks):
    for _ in range(6):
        signed(world, version, "pre_b", "pre_b", django_capture_on_commit_callbacks)
    assert not MonitoringAlert.objects.exists()  # 6 of 6 agree

    # Pre-B ALL called Benign: the harm this monitoring exists for.
    signed(world, version, "benign", "pre_b", django_capture_on_commit_callbacks)
    assert wilson_interval(6, 7)[1] > 0.95  # 6 of 7 may still be chance
    assert not MonitoringAlert.objects.exists()
    signed(world, version, "benign", "pre_b", django_capture_on_commit_callbacks)
    assert wilson_interval(6, 8)[1] < 0.95  # 6 of 8 is not
    alert = MonitoringAlert.objects.get()
    assert alert.kind == "agreement" and alert.site == world.site and alert.model_version == version
    assert alert.limit == pytest.approx(0.95) and alert.value == pytest.approx(0.75) and alert.window_cases == 8
    assert "St Mary's Clinic" in alert.message and "75% of the last 8" in alert.message

    for _ in range(3):
        signed(world, version, "benign", "pre_b", django_capture_on_commit_callbacks)
    assert MonitoringAlert.objects.count() == 1  # not repeated while it lasts


def test_acknowledged_alert_stays_until_the_condition_clears(world, version, django_capture_on_commit_callbacks):
    for _ in range(5):
        signed(world, version, "benign", "pre_b", django_capture_on_commit_callbacks)
    alert = MonitoringAlert.objects.get()
    alerts.acknowledge(user=world.pathologist, alert=alert)
    event = AuditEvent.objects.get(action="alert_acknowledged")
    assert event.actor == world.pathologist and event.detail["alert"] == alert.pk
    with pytest.raises(alerts.AlreadyAcknowledged):
        alerts.acknowledge(user=world.lab_admin, alert=alert)

    signed(world, version, "benign", "pre_b", django_capture_on_commit_callbacks)
    assert MonitoringAlert.objects.count() == 1  # acknowledged, but the drop goes on: no new alert

    for _ in range(10):  # a full window of agreement: the condition clears
        signed(world, version, "pre_b", "pre_b", django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    for _ in range(8):  # a new drop is a new alert
        signed(world, version, "benign", "pre_b", django_capture_on_commit_callbacks)
    assert MonitoringAlert.objects.filter(resolved_at__isnull=True).count() == 1
    assert MonitoringAlert.objects.count() == 2


def test_alert_is_emailed_when_configured(world, version, settings, mailoutbox, django_capture_on_commit_callbacks):
    world.lab_admin.email = "lars@lab.example"
    world.lab_admin.save()
    settings.EMAIL_MODE = "off"
    for _ in range(5):
        signed(world, version, "benign", "pre_b", django_capture_on_commit_callbacks)
    assert MonitoringAlert.objects.count() == 1 and mailoutbox == []  # e-mail off: the portal only

    MonitoringAlert.objects.all().delete()
    settings.EMAIL_MODE = "smtp"  # pytest-django keeps the locmem backend
    signed(world, version, "benign", "pre_b", django_capture_on_commit_callbacks)
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["lars@lab.example"]  # the laboratory's lab admins by default
    assert "St Mary's Clinic" in mail.subject and "below the 95%" in mail.body
    assert MonitoringAlert.objects.get().emailed_to == ["lars@lab.example"]

    MonitoringAlert.objects.all().delete()
    settings.MONITORING_ALERT_EMAILS = ["quality@lab.example", "oncall@lab.example"]
    signed(world, version, "benign", "pre_b", django_capture_on_commit_callbacks)
    assert mailoutbox[-1].to == ["quality@lab.example", "oncall@lab.example"]


def test_drift_alert_from_ood_scores(world, version, django_capture_on_commit_callbacks):
    for _ in range(4):  # scores under the threshold (10): within validated conditions
        signed(world, version, "pre_b", "pre_b", django_capture_on_commit_callbacks, ood=[3.0])
    for _ in range(2):  # a new stain batch: images far from the training ones
        signed(world, version, "pre_b", "pre_b", django_capture_on_commit_callbacks, ood=[30.0])
    alert = MonitoringAlert.objects.get(kind="drift")
    assert alert.value == pytest.approx(2 / 6) and alert.limit == 0.25
    assert not MonitoringAlert.objects.filter(kind="agreement").exists()


def test_no_drift_alert_without_ood(world, django_capture_on_commit_callbacks):
    without_threshold = make_version("no-ood-model")
    for _ in range(6):
        signed(world, without_threshold, "pre_b", "pre_b", django_capture_on_commit_callbacks, ood=[30.0])
    assert not MonitoringAlert.objects.exists()


def test_no_agreement_alert_without_a_validated_level(world, django_capture_on_commit_callbacks):
    unvalidated = make_version("no-metrics", accuracy=None)
    for _ in range(6):
        signed(world, unvalidated, "benign", "pre_b", django_capture_on_commit_callbacks)
    assert not MonitoringAlert.objects.exists()


def test_periodic_check_raises_what_a_signature_missed(world, version):
    for _ in range(5):  # signed without running the on-commit check (e.g. the web process died)
        sign(world, analysed_case(world, version, ["benign"]), "pre_b")
    assert not MonitoringAlert.objects.exists()
    from monitoring.tasks import evaluate_alerts

    assert evaluate_alerts() == 1
    assert evaluate_alerts() == 0
    assert MonitoringAlert.objects.count() == 1
