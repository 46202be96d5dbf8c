"""Idempotency-Key on POST /api/cases/ (issue 15, defect 3): a client that retries after a
timeout gets the case of its first request, never a second case."""

import threading

import pytest
from django.db import connection

from cases.models import Case, Smear
from idempotency.models import IdempotencyKey
from tests.api.conftest import assert_error
from tests.conftest import smear_upload


def submit(client, patient, key=None, files=None, **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    payload = {"patient": patient.pk, "images": files or [smear_upload()], "clinical_notes": "Blasts 30 %."}
    return client.post("/api/cases/", payload, format="multipart", **headers, **extra)


def test_a_retried_submission_returns_the_first_case(world, client_for):
    client = client_for(world.clinician)
    first = submit(client, world.patient, key="7f1e2c3a-retry-1")
    assert first.status_code == 201, first.content
    again = submit(client, world.patient, key="7f1e2c3a-retry-1")
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert Case.objects.count() == 1 and Smear.objects.count() == 1


def test_the_replay_keeps_the_short_answer(world, client_for):
    client = client_for(world.clinician)
    first = submit(client, world.patient, key="short-1", HTTP_PREFER="return=minimal")
    again = submit(client, world.patient, key="short-1", HTTP_PREFER="return=minimal")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json() and set(first.json()) == {"id", "reference", "status", "url"}
    assert again["Preference-Applied"] == "return=minimal"


def test_without_a_key_every_request_is_a_new_case(world, client_for):
    client = client_for(world.clinician)
    assert submit(client, world.patient).status_code == 201
    assert submit(client, world.patient).status_code == 201
    assert Case.objects.count() == 2


def test_the_same_key_for_another_request_is_refused(world, client_for):
    client = client_for(world.clinician)
    assert submit(client, world.patient, key="k-1").status_code == 201
    other_image = [smear_upload(colour=(10, 200, 10))]
    error = assert_error(submit(client, world.patient, key="k-1", files=other_image), 422, "idempotency_key_reused")
    assert "different request" in error["message"]
    assert Case.objects.count() == 1


def test_keys_belong_to_their_user(world, client_for):
    assert submit(client_for(world.clinician), world.patient, key="shared").status_code == 201
    assert submit(client_for(world.colleague), world.patient, key="shared").status_code == 201
    assert Case.objects.count() == 2


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
def test_a_malformed_key_is_a_400(world, client_for, key):
    assert_error(submit(client_for(world.clinician), world.patient, key=key), 400, "invalid_idempotency_key")
    assert not Case.objects.exists()


def test_a_refused_submission_does_not_use_up_its_key(world, client_for):
    client = client_for(world.clinician)
    bad = [smear_upload("bad.gif", fmt="GIF", content_type="image/gif")]
    assert_error(submit(client, world.patient, key="k-2", files=bad), 400)
    assert not IdempotencyKey.objects.exists()
    assert submit(client, world.patient, key="k-2").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_two_twins_sent_at_once_make_one_case(world, client_for):
    barrier = threading.Barrier(2)
    answers = []

    def send():
        try:
            barrier.wait()
            answers.append(submit(client_for(world.clinician), world.patient, key="twin"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answer.status_code for answer in answers) == [200, 201]
    assert answers[0].json() == answers[1].json()
    assert Case.objects.count() == 1 and Smear.objects.count() == 1


def test_keys_older_than_the_retention_are_forgotten_by_the_daily_task(world, client_for, settings):
    from datetime import timedelta

    from django.utils import timezone

    from core.task_lookup import task_named
    from telediag.settings import CELERY_BEAT_SCHEDULE

    settings.IDEMPOTENCY_KEY_RETENTION_DAYS = 7
    client = client_for(world.clinician)
    assert submit(client, world.patient, key="old-key").status_code == 201
    assert submit(client, world.patient, key="new-key").status_code == 201
    IdempotencyKey.objects.filter(key="old-key").update(created_at=timezone.now() - timedelta(days=8))
    scheduled = CELERY_BEAT_SCHEDULE["idempotency-purge"]["task"]
    assert task_named(scheduled).apply().get() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new-key"]
    # the forgotten key is free again: a new request with it is a new case
    assert submit(client, world.patient, key="old-key").status_code == 201
    assert Case.objects.count() == 3
