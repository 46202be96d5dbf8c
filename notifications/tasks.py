"""Celery tasks of notifications (the ``default`` queue): e-mails of in-app notices."""

import logging
import smtplib

from celery import shared_task

logger = logging.getLogger(__name__)

RETRIES = 5


@shared_task(name="notifications.send_email", bind=True, ignore_result=True, acks_late=True)
def send_email(self, notification_ids):
    """Send the e-mails of these notices; a mail server that is down is tried again with backoff.
    Each notice is marked once sent, so a retry never sends one twice."""
    from notifications.services import send_emails

    try:
        return send_emails([int(pk) for pk in notification_ids])
    except (smtplib.SMTPException, OSError) as exc:
        if self.request.retries < RETRIES:
            countdown = min(900, 30 * 2**self.request.retries)
            logger.warning("Notification e-mail failed (%s); retry in %s s", exc, countdown)
            raise self.retry(exc=exc, countdown=countdown) from None
        logger.error("Notification e-mails %s not sent: %s", notification_ids, exc)
        return 0
