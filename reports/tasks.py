"""Celery tasks of reports (the ``default`` queue): the push of a signed report to a FHIR server."""

import logging

from celery import shared_task
from django.conf import settings

logger = logging.getLogger(__name__)


@shared_task(name="reports.push_fhir", bind=True, ignore_result=True, acks_late=True)
def push_fhir(self, version_id):
    """Push one report version; transient failures (timeouts, 5xx, 429) retry with backoff."""
    from reports.push import PushFailed
    from reports.services import fhir_push

    try:
        return fhir_push(int(version_id))
    except PushFailed as exc:
        retries = self.request.retries
        if exc.transient and retries < settings.FHIR_PUSH_MAX_RETRIES:
            countdown = min(600, settings.FHIR_PUSH_RETRY_BACKOFF_S * 2**retries)
            logger.warning(
                "FHIR push of report %s failed (%s); retry %s in %s s", version_id, exc, retries + 1, countdown
            )
            raise self.retry(exc=exc, countdown=countdown) from None
        logger.error("FHIR push of report %s gave up: %s", version_id, exc)
        return False
