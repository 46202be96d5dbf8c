"""Reliability of the submission and analysis flow under faults (issue 15).

Unit-level: each test injects one fault into the real code path (the broker, the database, a
worker that vanishes) and checks that nothing stored is lost and nothing stays stuck. The
end-to-end fault suite with real services is ``reliability/`` (see docs/reliability.md).
"""
import pytest
from django.db import transaction

from cases.models import Case, Smear
from inference import services
from inference.models import AnalysisJob
from tests.conftest import smear_upload


def two_smears():
    return [smear_upload("a.png", colour=(180, 60, 120)), smear_upload("b.png", size=(40, 70), colour=(90, 90, 200))]


@pytest.mark.django_db(transaction=True)
def test_a_committed_case_keeps_its_images_when_the_publish_is_interrupted(world, model_version, monkeypatch):
    """Defect 1: gunicorn's worker timeout raises SystemExit while the on-commit publish runs.
    The case is committed by then: its files must stay, and the sweeper publishes its jobs."""
    def interrupted(job_ids):
        raise SystemExit(1)  # what gunicorn's SIGABRT handler raises in a timed-out sync worker

    monkeypatch.setattr(services, "publish_jobs", interrupted)
    with pytest.raises(SystemExit):
        world.submit_case(files=two_smears())
    case = Case.objects.get()
    smears = list(Smear.objects.filter(case=case))
    assert len(smears) == 2
    storage = Smear._meta.get_field("image").storage
    assert all(storage.exists(smear.image.name) for smear in smears)
    assert AnalysisJob.objects.filter(smear__case=case, status="queued").count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_submission_still_removes_its_files(world, model_version, monkeypatch):
    """The other side of defect 1: a failure before the commit leaves no file behind."""
    stored = []
    real_save = Smear.save

    def save_then_fail(self, *args, **kwargs):
        stored.append(self.image.name)
        if len(stored) == 2:
            raise RuntimeError("database went away mid-submission")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Smear, "save", save_then_fail)
    with pytest.raises(RuntimeError):
        world.submit_case(files=two_smears())
    storage = Smear._meta.get_field("image").storage
    assert not Case.objects.exists()
    assert stored and not any(storage.exists(name) for name in stored)
