"""The model performance page and API: numbers, per-organisation scoping, shape, constant queries."""

from datetime import date

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from audit.models import AuditEvent
from monitoring.models import MonitoringAlert
from monitoring.stats import wilson_interval
from tests.conftest import _user
from tests.monitoring.conftest import analysed_case, make_version, sign

API = "/api/monitoring/performance/"
PAGE = "/monitoring/performance/"


def api(client, user):
    token, _ = Token.objects.get_or_create(user=user)
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token.key}"
    return client


def sign_many(world, version, pairs, **kwargs):
    for ai, diagnosis in pairs:
        sign(world, analysed_case(world, version, [ai], **kwargs), diagnosis)


def second_site(world, name="Riverside Clinic"):
    """Another referring site of the same laboratory, with a clinician and a patient."""
    from accounts.models import Organisation, ReferralLink
    from cases.models import Patient

    site = Organisation.objects.create(name=name, kind="referring")
    ReferralLink.objects.create(site=site, laboratory=world.lab)
    clinician = _user(f"{name.split()[0].lower()}_clinician", site, "clinician")
    patient = Patient.objects.create(
        organisation=site,
        mrn=f"{name[:3]}-1",
        given_name="Robin",
        family_name="Patient",
        sex="F",
        date_of_birth=date(2014, 3, 2),
        created_by=clinician,
    )
    return site, clinician, patient


@pytest.fixture
def other_lab_admin(world):
    return _user("olav_otherlabadmin", world.other_lab, "lab_admin")


def test_report_numbers(client, world, version):
    # 7 agree, 2 disagree (one Pre-B called Benign), 1 non-diagnostic, 1 flagged.
    sign_many(world, version, [("pre_b", "pre_b")] * 5 + [("benign", "benign")] * 2, ood=[2.0])
    sign_many(world, version, [("benign", "pre_b"), ("pro_b", "early_pre_b")], ood=[25.0])
    sign_many(world, version, [("pre_b", "non_diagnostic")], ood=[3.0])
    sign(world, analysed_case(world, version, ["pre_b"], flags=[["low confidence"]]), "pre_b")

    body = api(client, world.lab_admin).get(API).json()
    assert body["laboratory"]["id"] == world.lab.pk and len(body["rows"]) == 1
    row = body["rows"][0]
    assert row["site"] == {"id": world.site.pk, "name": world.site.name}
    assert row["model_version"]["id"] == version.pk and row["model_version"]["validated_accuracy"] == 0.95
    assert (row["cases_signed"], row["compared"], row["agreed"]) == (11, 10, 8)
    assert row["agreement_rate"] == pytest.approx(0.8)
    low, high = wilson_interval(8, 10)
    assert row["agreement_ci"] == {"low": pytest.approx(low), "high": pytest.approx(high), "level": 0.95}
    assert row["agreement_ci"]["low"] == pytest.approx(0.4902, abs=1e-4)  # 8/10: 49.0 % to 94.3 %
    assert row["agreement_ci"]["high"] == pytest.approx(0.9433, abs=1e-4)
    assert row["flagged"] == 1 and row["flagged_rate"] == pytest.approx(1 / 11)
    # Drift: 2 of the 10 images with an OOD score are above the threshold (10).
    drift = row["drift"]
    assert drift["available"] is True and drift["score"] == pytest.approx(0.2) and drift["threshold"] == 10.0
    assert drift["images"] == 10 and drift["outside_images"] == 2 and drift["above_alert_level"] is False

    diagnoses = [d["value"] for d in row["confusion"]["diagnoses"]]
    matrix = {r["ai_label"]: dict(zip(diagnoses, r["counts"], strict=True)) for r in row["confusion"]["rows"]}
    assert matrix["pre_b"] == {"benign": 0, "early_pre_b": 0, "pre_b": 6, "pro_b": 0, "non_diagnostic": 1}
    assert matrix["benign"]["pre_b"] == 1 and matrix["benign"]["benign"] == 2
    assert matrix["pro_b"]["early_pre_b"] == 1
    assert sum(sum(r["counts"]) for r in row["confusion"]["rows"]) == 11


def test_drift_not_available_without_ood(client, world):
    no_threshold = make_version("without-ood")
    sign_many(world, no_threshold, [("pre_b", "pre_b")], ood=[3.0])
    with_threshold = make_version("with-ood-no-scores", ood_threshold=5.0)
    sign_many(world, with_threshold, [("pre_b", "pre_b")])  # the version scored no image

    rows = {r["model_version"]["name"]: r for r in api(client, world.lab_admin).get(API).json()["rows"]}
    assert rows["without-ood"]["drift"] == {
        "available": False,
        "reason": "The model version has no calibrated OOD threshold.",
        "score": None,
    }
    assert rows["with-ood-no-scores"]["drift"]["available"] is False
    assert rows["with-ood-no-scores"]["drift"]["score"] is None
    client.defaults.pop("HTTP_AUTHORIZATION")  # portal pages take a session, not a token
    client.force_login(world.lab_admin)
    page = client.get(PAGE)
    assert page.status_code == 200 and "not available" in page.content.decode()


@pytest.mark.parametrize("who, expected", [("pathologist", 403), ("clinician", 403), ("site_admin", 200), (None, 401)])
def test_who_reads_the_report(client, world, version, who, expected):
    sign_many(world, version, [("pre_b", "pre_b")])
    if who:
        api(client, getattr(world, who))
    response = client.get(API)
    assert response.status_code == expected
    if who == "site_admin":  # a lab admin of a referring site: no case is read there, nothing to see
        assert response.json()["rows"] == []


def test_another_organisations_admin_sees_nothing(client, world, version, other_lab_admin):
    sign_many(world, version, [("benign", "pre_b")] * 6)
    assert api(client, other_lab_admin).get(API).json()["rows"] == []
    assert client.get(f"{API}?site={world.site.pk}").status_code == 404  # not a site of their laboratory
    assert client.get(f"{API}?site=nope").status_code == 404
    assert client.get(f"{API}?site=99999999999999999999999").status_code == 404  # not a 500
    client.force_login(other_lab_admin)
    assert client.get(f"{PAGE}?site={world.site.pk}").status_code == 404

    alert = MonitoringAlert.objects.create(
        laboratory=world.lab, site=world.site, model_version=version, kind="agreement", message="m", value=0.1,
        limit=0.95, window_cases=6,
    )  # fmt: skip
    assert client.post(f"/monitoring/alerts/{alert.pk}/acknowledge/").status_code == 404
    assert client.post(f"/api/monitoring/alerts/{alert.pk}/acknowledge/").status_code == 404
    assert api(client, other_lab_admin).get("/api/monitoring/alerts/").json()["results"] == []
    alert.refresh_from_db()
    assert alert.acknowledged_at is None

    client.logout()  # the session (other_lab_admin) would take precedence over the token
    own = api(client, world.lab_admin).get(f"{API}?site={world.site.pk}").json()
    assert [r["site"]["id"] for r in own["rows"]] == [world.site.pk]


def test_alerts_in_the_portal_and_acknowledged_through_the_api(client, world, version, settings):
    settings.MONITORING_WINDOW_CASES, settings.MONITORING_MIN_CASES = 10, 5
    from monitoring.alerts import evaluate_all

    sign_many(world, version, [("benign", "pre_b")] * 5)
    assert evaluate_all() == 1
    client.force_login(world.pathologist)
    html = client.get("/monitoring/alerts/").content.decode()
    assert 'data-testid="monitoring-alert"' in html and "Acknowledge" in html
    assert client.get("/monitoring/").url == "/monitoring/alerts/"
    client.force_login(world.lab_admin)
    assert client.get("/monitoring/").url == PAGE
    page = client.get(PAGE).content.decode()
    assert 'data-testid="monitoring-alert"' in page and "below the validated level" in page

    alert = MonitoringAlert.objects.get()
    client.logout()
    response = api(client, world.pathologist).post(f"/api/monitoring/alerts/{alert.pk}/acknowledge/")
    assert response.status_code == 200
    assert response.json()["acknowledged_by"] and response.json()["site_name"] == world.site.name
    assert client.post(f"/api/monitoring/alerts/{alert.pk}/acknowledge/").status_code == 409
    assert AuditEvent.objects.filter(action="alert_acknowledged", actor=world.pathologist).count() == 1
    assert api(client, world.clinician).get("/api/monitoring/alerts/").status_code == 403
    client.defaults.pop("HTTP_AUTHORIZATION")
    client.force_login(world.lab_admin)
    assert 'data-testid="monitoring-alert"' not in client.get(PAGE).content.decode()


def test_the_report_takes_a_constant_number_of_queries(client, world, version):
    sign_many(world, version, [("pre_b", "pre_b"), ("benign", "pre_b")], ood=[4.0])
    client = api(client, world.lab_admin)
    client.get(API)

    def count():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(API).status_code == 200
        return len(captured)

    few = count()
    # More sites, versions and cases: the same queries.
    other_version = make_version("second-version", ood_threshold=8.0)
    site, clinician, patient = second_site(world)
    for v in (version, other_version):
        sign_many(world, v, [("pre_b", "pre_b"), ("pro_b", "pro_b"), ("benign", "pre_b")] * 3, ood=[9.0])
        for ai, diagnosis in [("benign", "benign"), ("pre_b", "non_diagnostic")] * 3:
            sign(world, analysed_case(world, v, [ai], clinician=clinician, patient=patient), diagnosis)
    MonitoringAlert.objects.create(
        laboratory=world.lab, site=site, model_version=other_version, kind="drift", message="m", value=0.5,
        limit=0.25, window_cases=6,
    )  # fmt: skip
    assert len(client.get(API).json()["rows"]) == 4
    assert count() == few, "the report's query count grows with the data"

    client.defaults.pop("HTTP_AUTHORIZATION")
    client.force_login(world.lab_admin)
    client.get(PAGE)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(PAGE).status_code == 200
    assert len(captured) <= few + 4  # session, user, second factor, messages


def test_the_report_reads_neither_the_training_split_nor_the_ood_arrays(client, world, version):
    sign_many(world, version, [("pre_b", "pre_b")], ood=[12.0])
    MonitoringAlert.objects.create(
        laboratory=world.lab, site=world.site, model_version=version, kind="drift", message="m", value=1.0,
        limit=0.25, window_cases=1,
    )  # fmt: skip
    with CaptureQueriesContext(connection) as captured:
        body = api(client, world.lab_admin).get(API).json()
        assert len(client.get("/api/monitoring/alerts/").json()["results"]) == 1
    assert body["rows"][0]["drift"]["threshold"] == 10.0  # the threshold still comes through
    reads = [q["sql"] for q in captured.captured_queries if '"training_modelrecord"' in q["sql"]]
    assert reads and not any('"training_modelrecord"."split"' in sql for sql in reads)
    # The version's fitted OOD parameters (arrays) are not loaded for their threshold.
    assert not any('"training_modelversion"."ood",' in q["sql"] for q in captured.captured_queries)


def test_no_consensus_is_shown_but_not_compared(client, world, version):
    # inference records "no_consensus" for a case whose images disagree (issue 14, section 3).
    from monitoring.models import CaseOutcome

    sign_many(world, version, [("pre_b", "pre_b"), ("benign", "pre_b")])
    outcome = CaseOutcome.objects.filter(ai_label="benign").get()
    CaseOutcome.objects.filter(pk=outcome.pk).update(ai_label="no_consensus", agreed=None)
    row = api(client, world.lab_admin).get(API).json()["rows"][0]
    assert (row["cases_signed"], row["compared"], row["agreed"]) == (2, 1, 1)
    names = [r["name"] for r in row["confusion"]["rows"]]
    assert names[-1] == "No consensus" and row["confusion"]["rows"][-1]["counts"][2] == 1
