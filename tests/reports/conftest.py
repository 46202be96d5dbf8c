"""A signed case with an AI result to report on: three images (two smears, one not a smear), the
per-image predictions a worker writes, one of them flagged, then a pathologist's signature."""

import pytest

from tests.conftest import smear_upload

# The real worker and Redis broker of the inference integration tests (test_push_worker).
from tests.inference.test_integration import broker_settings, services_up, start_worker  # noqa: F401

MODEL_NAME = "convnet-report-test-v3"
FLAG = "outside validated conditions"  # training.gates.OUTSIDE_VALIDATED, as the worker writes it
FLAG_TEXT = "Outside validated conditions"


def record_analysis(case, version):
    """The worker's output for every smear of ``case`` (jobs done, predictions written)."""
    from inference.models import AnalysisJob, Prediction

    probabilities = [
        {"benign": 0.05, "early_pre_b": 0.10, "pre_b": 0.80, "pro_b": 0.05},
        {"benign": 0.10, "early_pre_b": 0.20, "pre_b": 0.60, "pro_b": 0.10},
    ]
    for index, smear in enumerate(case.smears.order_by("pk")):
        job = AnalysisJob.objects.create(smear=smear, model_version=version, status=AnalysisJob.Status.DONE)
        if index < len(probabilities):
            Prediction.objects.create(
                smear=smear,
                model_version=version,
                job=job,
                label="pre_b",
                probabilities=probabilities[index],
                flags=[FLAG] if index == 1 else [],
            )
        else:
            Prediction.objects.create(
                smear=smear,
                model_version=version,
                job=job,
                label="not_a_smear",
                probabilities={},
                is_smear=False,
                smear_reasons=["mostly uniform background"],
                flags=["not a blood smear: mostly uniform background"],
            )


@pytest.fixture
def model_version(db):
    from ml.classes import CLASS_NAMES
    from training.models import ModelVersion

    return ModelVersion.objects.create(
        name=MODEL_NAME,
        architecture="convnet_bn",
        file_path="unused/model.keras",
        sha256="0" * 64,
        class_names=list(CLASS_NAMES),
        input_size=32,
    )


@pytest.fixture
def analysed_case(world, model_version):
    case = world.submit_case(
        files=[
            smear_upload("left-field.png", size=(320, 240), colour=(170, 60, 130)),
            smear_upload("right-field.png", size=(240, 320), colour=(150, 80, 160)),
            smear_upload("blank.png", size=(100, 100), colour=(250, 250, 250)),
        ],
        priority="urgent",
    )
    record_analysis(case, model_version)
    return case


def sign(case, user, diagnosis="pre_b", comment="Blasts with fine chromatin; typical of Pre-B ALL."):
    from cases.services import case_sign

    return case_sign(user=user, case=case, diagnosis=diagnosis, comment=comment, signature_method="password")


def amend(case, user, diagnosis="pro_b", reason="Flow cytometry: CD10 negative, so Pro-B rather than Pre-B."):
    from cases.services import case_amend

    return case_amend(
        user=user, case=case, diagnosis=diagnosis, reason=reason, comment="Revised.", signature_method="totp"
    )


@pytest.fixture
def signed_case(world, analysed_case):
    sign(analysed_case, world.pathologist)
    analysed_case.refresh_from_db()
    return analysed_case


def pdf_text(data):
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages), reader
