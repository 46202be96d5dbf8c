"""Every signed case records the AI's case-level suggestion and the pathologist's diagnosis."""

import pytest
from django.core.management import call_command

from monitoring.models import CaseOutcome
from tests.monitoring.conftest import amend, analysed_case, make_version, sign


def test_signing_records_the_outcome_in_the_same_transaction(world, version):
    case = analysed_case(
        world, version, ["pre_b", "pre_b"], ood=[4.0, 12.0], flags=[[], ["outside validated conditions"]]
    )
    assert not CaseOutcome.objects.exists()
    review = sign(world, case, "pre_b")

    outcome = CaseOutcome.objects.get(case=case)
    review.refresh_from_db()
    assert outcome.ai_label == review.ai_suggestion == "pre_b"  # the suggestion inference records
    assert (outcome.site, outcome.laboratory, outcome.model_version) == (world.site, world.lab, version)
    assert outcome.diagnosis == "pre_b" and outcome.agreed is True
    assert outcome.flagged is True  # one image carried a flag
    assert (outcome.images, outcome.ood_images, outcome.outside_images) == (2, 2, 1)  # threshold 10
    assert outcome.ood_mean == pytest.approx(8.0) and outcome.ood_max == pytest.approx(12.0)
    case.refresh_from_db()
    assert outcome.signed_at == case.signed_at


def test_an_amendment_rewrites_the_one_outcome(world, version):
    case = analysed_case(world, version, ["pre_b"], ood=[1.0])
    sign(world, case, "pre_b")
    first = CaseOutcome.objects.get(case=case)
    amend(world, case, "benign")  # Pre-B called Benign by the pathologist on a second look

    assert CaseOutcome.objects.filter(case=case).count() == 1
    outcome = CaseOutcome.objects.get(case=case)
    assert outcome.pk == first.pk and outcome.diagnosis == "benign" and outcome.agreed is False
    assert outcome.signed_at == first.signed_at  # still when it was first signed
    assert outcome.flagged is False and outcome.outside_images == 0


def test_outcomes_that_cannot_be_compared(world, version):
    non_diagnostic = analysed_case(world, version, ["pro_b"])
    sign(world, non_diagnostic, "non_diagnostic")
    outcome = CaseOutcome.objects.get(case=non_diagnostic)
    assert outcome.ai_label == "pro_b" and outcome.agreed is None

    mixed = analysed_case(world, version, ["benign", "not_a_smear"])
    from inference.models import Prediction

    Prediction.objects.filter(smear__case=mixed, label="not_a_smear").update(is_smear=False, probabilities={})
    sign(world, mixed, "benign")
    outcome = CaseOutcome.objects.get(case=mixed)
    assert outcome.flagged is True  # an image is not a smear
    assert outcome.ood_images == 0 and outcome.ood_mean is None  # no OOD score: nothing invented

    no_ai = world.submit_case()
    sign(world, no_ai, "benign")
    outcome = CaseOutcome.objects.get(case=no_ai)
    assert outcome.model_version is None and outcome.ai_label == "" and outcome.agreed is None


def test_without_a_threshold_outside_images_stay_unknown(world):
    plain = make_version("no-ood-threshold")
    case = analysed_case(world, plain, ["benign"], ood=[50.0])
    sign(world, case, "benign")
    outcome = CaseOutcome.objects.get(case=case)
    assert outcome.ood_images == 1 and outcome.outside_images is None


def test_backfill_command_records_cases_signed_before(world, version):
    cases = [analysed_case(world, version, [label]) for label in ("benign", "pre_b")]
    sign(world, cases[0], "benign")
    sign(world, cases[1], "pro_b")
    amend(world, cases[1], "pre_b")
    analysed_case(world, version, ["benign"])  # not signed: no outcome
    CaseOutcome.objects.all().delete()

    call_command("monitoring_backfill", "--no-alerts")
    assert {(o.case_id, o.diagnosis, o.agreed) for o in CaseOutcome.objects.all()} == {
        (cases[0].pk, "benign", True),
        (cases[1].pk, "pre_b", True),
    }
    call_command("monitoring_backfill", "--no-alerts")  # again: still one row per case
    assert CaseOutcome.objects.count() == 2
