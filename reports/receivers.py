"""How reports answer the clinical record's signals (connected in ReportsConfig.ready)."""

import logging
from functools import partial

from django.db import transaction
from django.dispatch import receiver

from cases.models import Review
from cases.signals import case_amended, case_signed
from reports import services

logger = logging.getLogger(__name__)


def issue_report(review_id):
    """After the signature commits: render and store its report version, then push it (if set up).

    A failure here never undoes the signature: the version is made on its first download instead.
    """
    try:
        version = services.report_version_create(Review.objects.select_related("case").get(pk=review_id))
    except Exception:  # noqa: BLE001 - logged; the download path makes the report later
        logger.exception("Could not issue the report of signed review %s now", review_id)
        return None
    services.queue_fhir_push(version)
    return version


@receiver(case_signed, dispatch_uid="reports-issue-on-sign")
def report_on_sign(sender, case, review, **kwargs):
    transaction.on_commit(partial(issue_report, review.pk))


@receiver(case_amended, dispatch_uid="reports-issue-on-amend")
def report_on_amend(sender, case, review, **kwargs):
    transaction.on_commit(partial(issue_report, review.pk))
