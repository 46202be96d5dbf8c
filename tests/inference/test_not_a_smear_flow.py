"""The worker's smear gate end to end (for tests/inference/, once the lead's edits are in)."""

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string
from PIL import Image

from cases.models import Case
from inference import status
from inference.models import AnalysisJob, Prediction
from inference.tasks import analyse_smear
from ml.smear_check import SmearCheck
from tests.conftest import smear_upload
from tests.inference.test_smear_gate import synthetic_smear
from training import gates as smear_gate, registry


def png_upload(name, pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


@pytest.fixture(scope="module")
def params():
    return SmearCheck().fit(np.stack([synthetic_smear(s) for s in range(40)])).to_dict()


def test_a_blank_upload_is_not_given_a_subtype(world, model_version, params, fresh_model_cache):
    smear_gate.clear_cache()
    registry.attach_smear_check(model_version, params)
    case = world.submit_case(files=[png_upload("smear.png", synthetic_smear(901)), smear_upload("blank.png")])
    for job in AnalysisJob.objects.filter(smear__case=case).order_by("pk"):
        assert analyse_smear(job.pk) == "done"
    good, bad = Prediction.objects.filter(smear__case=case).order_by("smear_id")
    assert good.is_smear and good.label != "not_a_smear" and good.heatmap
    assert not bad.is_smear and bad.label == "not_a_smear" and bad.smear_reasons == ["blank frame"]
    assert bad.probabilities == {} and not bad.heatmap
    result = status.case_analysis_data(case)["result"]
    assert result["label"] == good.label and result["analysed"] == 1 and result["not_smear"] == 1
    assert result["attention"] and any("blank.png is not a blood smear (blank frame)" in r for r in result["reasons"])
    html = render_to_string("inference/case_analysis.html", {"analysis": status.case_analysis_data(case), "case": case})
    assert "Not a blood smear:</strong> blank frame" in html


def test_a_non_smear_flags_its_case_for_the_review_queue(world, model_version, params, settings, fresh_model_cache):
    settings.ATTENTION_THRESHOLD = 0.0  # no image is flagged for low confidence: only the gate flags
    smear_gate.clear_cache()
    registry.attach_smear_check(model_version, params)
    smear_case = world.submit_case(files=[png_upload("smear.png", synthetic_smear(902))])
    blank_case = world.submit_case(files=[smear_upload("blank.png")])
    for case in (smear_case, blank_case):
        assert analyse_smear(AnalysisJob.objects.get(smear__case=case).pk) == "done"
    assert Prediction.objects.get(smear__case=smear_case).is_smear
    assert not Prediction.objects.get(smear__case=blank_case).is_smear
    flagged = dict(Case.objects.filter(pk__in=[smear_case.pk, blank_case.pk]).values_list("pk", "ai_flagged"))
    assert flagged == {smear_case.pk: False, blank_case.pk: True}


def test_only_non_smears_give_no_subtype_and_no_check_changes_nothing(world, model_version, params, fresh_model_cache):
    smear_gate.clear_cache()
    case = world.submit_case(files=[smear_upload("blank.png")])
    assert analyse_smear(AnalysisJob.objects.get(smear__case=case).pk) == "done"
    assert Prediction.objects.get(smear__case=case).is_smear  # no check stored: classified as before
    registry.attach_smear_check(model_version, params)
    case2 = world.submit_case(files=[smear_upload("blank2.png")])
    assert analyse_smear(AnalysisJob.objects.get(smear__case=case2).pk) == "done"
    data = status.case_analysis_data(case2)
    assert data["result"]["label"] is None and data["result"]["label_display"].startswith("No subtype")
    html = render_to_string("inference/case_analysis.html", {"analysis": data, "case": case2})
    assert "Not a blood smear" in html and "mean probability" not in html


def test_an_upload_is_decoded_once_for_the_model_and_the_smear_check(
    world, model_version, params, fresh_model_cache, monkeypatch
):
    """The smear check's 224 px image is resized from the decode the model's input came from."""
    import ml.images as images

    smear_gate.clear_cache()
    registry.attach_smear_check(model_version, params)
    calls = []
    decode, prepare = images.decode_image, images.prepare_decoded
    monkeypatch.setattr(images, "decode_image", lambda source: calls.append("decode") or decode(source))
    monkeypatch.setattr(
        images, "prepare_decoded", lambda image, size, source=None: calls.append(size) or prepare(image, size, source)
    )
    monkeypatch.setattr(images, "prepare_image", lambda *args: pytest.fail("decoded a second time"))
    case = world.submit_case(files=[png_upload("smear.png", synthetic_smear(902)), smear_upload("blank.png")])
    for job in AnalysisJob.objects.filter(smear__case=case).order_by("pk"):
        assert analyse_smear(job.pk) == "done"
    assert calls == ["decode", model_version.input_size, params["image_size"]] * 2
    good, bad = Prediction.objects.filter(smear__case=case).order_by("smear_id")
    assert good.is_smear and not bad.is_smear and bad.smear_reasons == ["blank frame"]
