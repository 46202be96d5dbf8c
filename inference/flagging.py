"""Which cases the AI flags for a second look, kept on the case as ``Case.ai_flagged``.

A case is flagged when one of its images has a flagged prediction (outside validated conditions,
low confidence: ``Prediction.flags``) or is not a blood smear, or when one of its analyses failed,
whatever the model version. The review queue filters on the stored flag (an index condition:
``case_review_queue_flagged``) instead of walking every case's predictions and jobs.

The flag is computed by one rule (``flagged_condition``). What can only make the rule true (a
flagged prediction stored by the worker, a job failed: ``services.job_fail``) raises it with
``cases_flag_raise``; what can make it false (a failed job queued again: retry, re-run) recomputes
it with ``case_flag_refresh``. A prediction without flags cannot raise the flag, and a job that
ends done was not failed: neither can lower it.
"""

from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from cases.models import Case
from inference.models import AnalysisJob, Prediction

FLAGGED_PREDICTION = ~Q(flags=[]) | Q(is_smear=False)


def prediction_is_flagged(prediction):
    """``FLAGGED_PREDICTION`` for a prediction in hand (the worker's, before anything reads it back)."""
    return bool(prediction.flags) or prediction.is_smear is False


def flagged_condition(prediction_model=Prediction, job_model=AnalysisJob):
    """The rule as an SQL condition on a case row (``OuterRef("pk")``).

    The models are parameters so that a migration can pass its historical ones.
    """
    flagged_prediction = prediction_model.objects.filter(smear__case_id=OuterRef("pk")).filter(FLAGGED_PREDICTION)
    failed_job = job_model.objects.filter(smear__case_id=OuterRef("pk"), status=AnalysisJob.Status.FAILED)
    return Exists(flagged_prediction) | Exists(failed_job)


def cases_flag_recompute(cases, prediction_model=Prediction, job_model=AnalysisJob):
    """Store the rule's answer on every case of the queryset ``cases``, in one UPDATE that writes only
    the rows whose flag changes. Returns how many changed (the backfill, bench/scale.py)."""
    condition = flagged_condition(prediction_model, job_model)
    return cases.filter(~Q(ai_flagged=condition)).update(ai_flagged=condition)


def cases_flag_raise(case_ids):
    """Flag the cases ``case_ids`` once a flagged prediction or a failed job of theirs is written
    (in the same transaction): the rule is then true whatever else the case holds, so no
    subquery is needed.

    The UPDATE writes every row, flagged already or not: its row lock is what keeps a concurrent
    ``case_flag_refresh`` from lowering the flag on a view without this transaction's row (the
    refresh waits for the lock, then sees the row); a refresh that locked first commits before this
    statement writes.
    """
    return Case.objects.filter(pk__in=case_ids).update(ai_flagged=True)


def case_flag_refresh(case_id):
    """Store the rule's answer on one case; call it once the prediction or job that changed it is
    written (in the same transaction, or after it).

    The case row is locked first and the UPDATE computed after, as its own statement: under READ
    COMMITTED that statement sees every prediction and job committed by a writer that held the lock
    before. A lone UPDATE that waited for the row would keep its older view of the other tables and
    could store a stale answer: a retry clearing the flag just as another image's analysis fails
    would leave the case unflagged.
    """
    with transaction.atomic(savepoint=False):
        case = Case.objects.filter(pk=case_id)
        list(case.select_for_update().values_list("pk", flat=True))
        case.update(ai_flagged=flagged_condition())
