"""How monitoring answers the clinical record's signals (connected in MonitoringConfig.ready)."""

import logging
from functools import partial

from django.db import transaction
from django.dispatch import receiver

from cases.signals import case_amended, case_signed
from monitoring import alerts
from monitoring.outcomes import record_case_outcome

logger = logging.getLogger(__name__)


def _evaluate_after_commit(outcome):
    # After the signature is committed: a failing check must never cost a pathologist a signature.
    if outcome is not None and outcome.model_version_id is not None:
        key = (outcome.laboratory_id, outcome.site_id, outcome.model_version_id)
        transaction.on_commit(partial(alerts.evaluate, *key), robust=True)


@receiver(case_signed, dispatch_uid="monitoring-record-outcome")
def record_signed_outcome(sender, case, review, **kwargs):
    # In the signing transaction: the outcome exists exactly when the signature does.
    _evaluate_after_commit(record_case_outcome(case))


@receiver(case_amended, dispatch_uid="monitoring-record-amended-outcome")
def record_amended_outcome(sender, case, review, **kwargs):
    _evaluate_after_commit(record_case_outcome(case))
