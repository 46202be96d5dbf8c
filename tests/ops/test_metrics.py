"""/metrics: token-protected Prometheus exposition scraped from gunicorn, with web request metrics
and the analysis metrics read from PostgreSQL and the Redis broker."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import smear_upload
from tests.ops.conftest import http_get

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
TOKEN = "scrape-token-for-tests-0123456789"


def samples(body):
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))))


def make_predictions(world):
    from inference.models import AnalysisJob, Prediction
    from training.models import ModelVersion

    version = ModelVersion.objects.create(
        name="metrics-v1",
        architecture="convnet_bn",
        file_path="x/model.keras",
        sha256="0" * 64,
        class_names=["benign", "pre_b"],
    )
    case = world.submit_case(files=[smear_upload(f"s{i}.png") for i in range(4)])
    smears = list(case.smears.order_by("pk"))
    rows = [  # label, probabilities, is_smear, inference_ms, total_ms
        ("pre_b", {"benign": 0.1, "pre_b": 0.9}, True, 40, 900),
        ("pre_b", {"benign": 0.45, "pre_b": 0.55}, True, 60, 1200),  # below the 0.6 attention threshold
        ("benign", {"benign": 0.8, "pre_b": 0.2}, True, 3000, 4000),
        ("not_a_smear", {}, False, None, 300),
    ]
    for smear, (label, probabilities, is_smear, inference_ms, total_ms) in zip(smears, rows):
        job = AnalysisJob.objects.create(smear=smear, model_version=version, status="done")
        Prediction.objects.create(
            smear=smear,
            model_version=version,
            job=job,
            label=label,
            probabilities=probabilities,
            is_smear=is_smear,
            inference_ms=inference_ms,
            total_ms=total_ms,
            queue_wait_ms=500,
        )
    failed = world.submit_case(files=[smear_upload("f.png")]).smears.get()
    AnalysisJob.objects.create(smear=failed, model_version=version, status="failed", reason="test")
    return version


def test_metrics_are_off_without_a_token_and_refused_without_it(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_scrape_reports_requests_queues_and_predictions_by_label_flag_and_version(
    world, postgres, redis_url, start_gunicorn
):
    from telediag.celery import app

    make_predictions(world)
    # Three messages wait in the inference queue and one in training (no worker consumes them).
    # Through a connection of its own: the app's producer pool may still point at the broker an
    # earlier test published to.
    with app.connection_for_write(redis_url) as connection:
        for n in range(3):
            app.send_task("inference.analyse_smear", args=[10_000 + n], queue="inference", connection=connection)
        app.send_task("training.retrain", args=[], queue="training", connection=connection)

    # Production-like: Prometheus scrapes over HTTP by a host name that is not in ALLOWED_HOSTS.
    base, _ = start_gunicorn(
        CELERY_BROKER_URL=redis_url,
        TELEDIAG_METRICS_TOKEN=TOKEN,
        TELEDIAG_HTTPS="true",
        ALLOWED_HOSTS="telediag.example.org",
        TELEDIAG_BEHIND_PROXY="true",
    )
    proxied = {"Host": "telediag.example.org", "X-Forwarded-Proto": "https"}
    assert http_get(base + "/accounts/login/", proxied)[0] == 200
    assert http_get(base + "/no-such-page/", proxied)[0] == 404
    assert http_get(base + "/accounts/login/", {"Host": "telediag.example.org"})[0] == 301  # plain HTTP: redirected...
    status, headers, body = http_get(base + "/metrics", {"Authorization": f"Bearer {TOKEN}"})  # ...not scrapes
    assert http_get(base + "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    found = samples(body)

    # Web: requests, latency, errors (django-prometheus).
    assert value(found, "django_http_requests_before_middlewares_total") >= 3  # the redirect included
    assert value(found, "django_http_requests_total_by_method_total", method="GET") >= 2
    assert value(found, "django_http_responses_total_by_status_total", status="404") >= 1
    assert any(name == "django_http_requests_latency_seconds_by_view_method_count" for name, _ in found)

    # Broker queues.
    assert value(found, "telediag_broker_up") == 1
    assert value(found, "telediag_queue_length", queue="inference") == 3
    assert value(found, "telediag_queue_length", queue="training") == 1
    assert value(found, "telediag_queue_length", queue="default") == 0

    # Predictions by label and flag, per model version; jobs and failures.
    v = "metrics-v1"
    assert value(found, "telediag_predictions_total", model_version=v, label="pre_b", flag="none") == 1
    assert value(found, "telediag_predictions_total", model_version=v, label="pre_b", flag="low_confidence") == 1
    assert value(found, "telediag_predictions_total", model_version=v, label="benign", flag="none") == 1
    assert value(found, "telediag_predictions_total", model_version=v, label="not_a_smear", flag="not_a_smear") == 1
    assert value(found, "telediag_analysis_jobs", status="done", model_version=v) == 4
    assert value(found, "telediag_analysis_jobs", status="failed", model_version=v) == 1

    # Inference time and task latency histograms (seconds).
    assert value(found, "telediag_inference_seconds_count", model_version=v) == 3
    assert value(found, "telediag_inference_seconds_sum", model_version=v) == pytest.approx(3.1)
    assert value(found, "telediag_inference_seconds_bucket", model_version=v, le="0.05") == 1
    assert value(found, "telediag_inference_seconds_bucket", model_version=v, le="0.1") == 2
    assert value(found, "telediag_task_seconds_count", model_version=v) == 4
    assert value(found, "telediag_queue_wait_seconds_bucket", model_version=v, le="0.5") == 4

    # Nothing about patients in the exposition.
    assert world.patient.family_name.encode() not in body and world.patient.mrn.encode() not in body


def test_several_gunicorn_workers_add_up_their_request_counts(postgres, redis_url, start_gunicorn, tmp_path):
    """compose's web: 3 gunicorn workers and PROMETHEUS_MULTIPROC_DIR, so any scrape counts all requests."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    # Each worker process is replaced after 5 requests: the 30 requests are served by at least 6
    # processes, and the counts of the ones that exited must still be there.
    base, _ = start_gunicorn(
        CELERY_BROKER_URL=redis_url,
        TELEDIAG_METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=folder,
        workers=3,
        extra_args=("--max-requests", "5"),
    )
    for _ in range(30):
        assert http_get(base + "/accounts/login/")[0] == 200
    assert len(list(folder.glob("counter_*.db"))) >= 6
    found = samples(http_get(base + "/metrics", {"Authorization": f"Bearer {TOKEN}"})[2])
    views = {
        labels: count
        for (name, labels), count in found.items()
        if name == "django_http_responses_total_by_status_view_method_total"
        and ("status", "200") in labels
        and ("view", "login") in labels
    }
    assert sum(views.values()) == 30
