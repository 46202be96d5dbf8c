"""Fixtures of the monitoring tests: model versions with validation metrics, and analysed cases.

A case's AI result is written as the worker writes it (an AnalysisJob done and a Prediction per
image of one model version); no Keras model runs here, tests/inference covers that path.
"""

import pytest
from django.utils import timezone

from tests.conftest import smear_upload

CLASSES = ["benign", "early_pre_b", "pre_b", "pro_b"]


def has_ood_field():
    from training.models import ModelVersion

    return any(field.name == "ood" for field in ModelVersion._meta.get_fields())


def make_version(name, *, accuracy=0.95, n=400, ood_threshold=None):
    from training.models import ModelRecord, ModelVersion

    version = ModelVersion.objects.create(
        name=name, architecture="convnet_bn", file_path=f"{name}.keras", sha256="0" * 64, class_names=CLASSES
    )
    metrics = {"test": {"n": n, "accuracy": accuracy}} if accuracy is not None else {}
    if ood_threshold is not None and has_ood_field():
        # Where the registry stores a fitted OOD model (ml.ood): its threshold beside its arrays.
        version.ood = {"kind": "mahalanobis", "threshold": ood_threshold, "arrays": {"mean": "A" * 50_000}}
        version.save(update_fields=["ood"])
    elif ood_threshold is not None:
        metrics["ood"] = {"threshold": ood_threshold}
    ModelRecord.objects.create(version=version, metrics=metrics, split={"train": ["x.png"] * 100})
    return version


@pytest.fixture
def version(db):
    return make_version("mobilenet-monitored", ood_threshold=10.0)


def one_hot(label):
    return {name: (0.97 if name == label else 0.01) for name in CLASSES}


def analysed_case(world, version, labels, *, ood=None, flags=None, clinician=None, patient=None):
    """A submitted case whose images the AI classified as ``labels`` with ``version``."""
    from cases.services import case_submit
    from inference.models import AnalysisJob, Prediction

    case = case_submit(
        user=clinician or world.clinician,
        patient=patient or world.patient,
        files=[smear_upload(f"s{i}.png") for i in range(len(labels))],
        clinical_notes="",
        priority="routine",
    )
    for i, (smear, label) in enumerate(zip(case.smears.order_by("pk"), labels, strict=True)):
        job = AnalysisJob.objects.create(
            smear=smear, model_version=version, status=AnalysisJob.Status.DONE, finished_at=timezone.now()
        )
        Prediction.objects.create(
            smear=smear,
            model_version=version,
            job=job,
            label=label,
            probabilities=one_hot(label),
            ood_score=ood[i] if ood else None,
            flags=(flags[i] if flags else []) or [],
        )
    return case


def sign(world, case, diagnosis, *, pathologist=None):
    from cases.services import case_sign

    return case_sign(signature_method="password", user=pathologist or world.pathologist, case=case, diagnosis=diagnosis)


def amend(world, case, diagnosis):
    from cases.services import case_amend

    return case_amend(
        signature_method="password", user=world.pathologist, case=case, diagnosis=diagnosis, reason="Second look."
    )
