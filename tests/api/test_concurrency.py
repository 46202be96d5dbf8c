"""Two pathologists sign the same case at the same moment: exactly one signature (PostgreSQL)."""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from cases.models import Case, Review
from tests.conftest import DEMO_PASSWORD


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_concurrent_signatures_one_wins_one_gets_409(world):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locking (set TELEDIAG_TEST_DATABASE_URL to a PostgreSQL URL)")
    case = world.submit_case()
    url = f"/api/cases/{case.pk}/sign/"
    signers = {"pre_b": world.pathologist, "pro_b": world.pathologist2}
    barrier = threading.Barrier(len(signers), timeout=30)
    results = {}

    def sign(diagnosis, user):
        try:
            client = APIClient()
            client.force_authenticate(user)
            barrier.wait()
            response = client.post(url, {"password": DEMO_PASSWORD, "diagnosis": diagnosis}, format="json")
            results[user.username] = (response.status_code, response.json())
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            results[user.username] = ("exception", repr(exc))
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=sign, args=item) for item in signers.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    statuses = sorted(status for status, _ in results.values())
    assert statuses == [200, 409], results
    winner = next(name for name, (status, _) in results.items() if status == 200)
    loser = next(name for name, (status, _) in results.items() if status == 409)
    winner_user = world.pathologist if winner == world.pathologist.username else world.pathologist2
    error = results[loser][1]["error"]
    assert error["code"] == "already_signed"
    assert str(winner_user) in error["message"] and error["details"]["signed_by"] == str(winner_user)

    assert Review.objects.filter(case=case, kind=Review.Kind.SIGNATURE).count() == 1
    case.refresh_from_db()
    assert case.status == Case.Status.SIGNED and case.signed_by == winner_user
    assert Review.objects.get(case=case).signed_by == winner_user
