"""Who is told what, and when: in-app notices, and e-mails of them when TELEDIAG_NOTIFICATION_EMAILS is on.

Notices are written in the transaction of the change they announce (they commit or roll back with
it); e-mails go out only after it commits, through a Celery task, so a slow mail server never holds
up a signature. An e-mail names the case and what happened, never the patient or the diagnosis:
e-mail is not a channel for patient data; the link leads to the portal, behind the login.
"""

import logging
from functools import partial

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from core.task_lookup import task_named
from inference import publishing
from notifications.models import Notification

logger = logging.getLogger(__name__)

EMAIL_TASK = "notifications.send_email"


def _users(organisation_id, role):
    return list(User.objects.filter(organisation_id=organisation_id, role=role, is_active=True))


def notify(recipients, *, kind, case=None, title, body="", url="", once_while_unread=False):
    """One notice per recipient (each user once); ``once_while_unread`` skips users who still have an
    unread notice of this kind for this case (a case whose three images fail says so once)."""
    recipients = {user.pk: user for user in recipients if user is not None and user.is_active}
    if once_while_unread and recipients:
        already = Notification.objects.filter(
            recipient_id__in=recipients, kind=kind, case=case, read_at__isnull=True
        ).values_list("recipient_id", flat=True)
        for user_id in set(already):
            recipients.pop(user_id, None)
    created = Notification.objects.bulk_create(
        [
            Notification(recipient=user, kind=kind, case=case, title=title[:200], body=body, url=url)
            for user in recipients.values()
        ]
    )
    if created and emails_enabled():
        transaction.on_commit(partial(queue_emails, [n.pk for n in created]))
    return created


def _case_url(case):
    return reverse("case-detail", args=[case.pk])


def notify_case_signed(case, review, *, amended=False, previous=None):
    """The referring site's clinicians: the report is ready (or changed)."""
    diagnosis = review.get_diagnosis_display()
    if amended:
        changed = previous is not None and previous.diagnosis != review.diagnosis
        was = f" (was {previous.get_diagnosis_display()})" if changed else ""
        title = f"{case.reference} amended: {diagnosis}{was}"
        body = f"Reason: {review.reason}" if review.reason else ""
        kind = Notification.Kind.CASE_AMENDED
    else:
        title = f"{case.reference} signed: {diagnosis}"
        body = review.comment
        kind = Notification.Kind.CASE_SIGNED
    clinicians = _users(case.site_id, User.Role.CLINICIAN)
    return notify([case.submitted_by, *clinicians], kind=kind, case=case, title=title, body=body, url=_case_url(case))


def notify_urgent_case(case):
    """The reading laboratory's pathologists: an urgent case joined their queue."""
    return notify(
        _users(case.laboratory_id, User.Role.PATHOLOGIST),
        kind=Notification.Kind.URGENT_CASE,
        case=case,
        title=f"Urgent case {case.reference} from {case.site.name}",
        body="An urgent case is waiting in the review queue.",
        url=reverse("case-review", args=[case.pk]),
    )


def notify_analysis_failed(case, reason):
    """The clinician who submitted the case: the AI could not analyse an image."""
    return notify(
        [case.submitted_by],
        kind=Notification.Kind.ANALYSIS_FAILED,
        case=case,
        title=f"Analysis failed for {case.reference}",
        body=f"{reason} The laboratory can retry it; a pathologist can sign without the AI result.",
        url=_case_url(case),
        once_while_unread=True,
    )


# --- Reading and marking ----------------------------------------------------------------------


def notifications_for(user):
    if not user.is_authenticated:
        return Notification.objects.none()
    return Notification.objects.filter(recipient=user)


def unread_count(user):
    if not user.is_authenticated:
        return 0
    return Notification.objects.filter(recipient=user, read_at__isnull=True).count()


def mark_read(user, ids=None):
    """Mark the user's notices ``ids`` (all of them when None) read; how many changed."""
    unread = notifications_for(user).filter(read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=list(ids))
    return unread.update(read_at=timezone.now())


# --- E-mail -----------------------------------------------------------------------------------


def emails_enabled():
    """TELEDIAG_NOTIFICATION_EMAILS on, and e-mail itself on (TELEDIAG_EMAIL smtp or console)."""
    return bool(settings.NOTIFICATION_EMAILS) and settings.EMAIL_MODE != "off"


def queue_emails(notification_ids):
    """Hand the e-mails to a worker (never raises: a broker failure only costs the e-mail)."""
    task = task_named(EMAIL_TASK)
    app = task.app
    try:
        with app.connection_for_write(**publishing.connection_options(app)) as connection:
            task.apply_async(args=[list(notification_ids)], connection=connection, **publishing.publish_options(app))
    except Exception as exc:  # noqa: BLE001 - the in-app notices exist; only the e-mail is lost
        logger.warning("Could not queue notification e-mails %s: %s: %s", notification_ids, type(exc).__name__, exc)
        return False
    return True


def _absolute(path):
    base = settings.PUBLIC_URL.rstrip("/")
    return f"{base}{path}" if base else path


EMAIL_SUBJECTS = {
    Notification.Kind.CASE_SIGNED: "case {reference} is signed",
    Notification.Kind.CASE_AMENDED: "case {reference} was amended",
    Notification.Kind.URGENT_CASE: "urgent case {reference} to review",
    Notification.Kind.ANALYSIS_FAILED: "analysis failed for case {reference}",
}


def email_message(notification):
    """The e-mail of a notice: the case reference and what happened; no patient data."""
    recipient = notification.recipient
    if notification.case is not None:
        what = EMAIL_SUBJECTS[notification.kind].format(reference=notification.case.reference)
    else:
        what = notification.get_kind_display()
    lines = [
        f"Hello {recipient.get_full_name() or recipient.username},",
        "",
        f"In Telediag, {what}. Open it (sign-in required):",
        _absolute(notification.url or reverse("notification-list")),
        "",
        "This message carries no patient data by design. You receive it because of your role at "
        f"{recipient.organisation or 'your organisation'}.",
    ]
    return EmailMessage(
        subject=f"Telediag: {what}",
        body="\n".join(lines),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[recipient.email],
    )


def send_emails(notification_ids):
    """Send each notice's e-mail once (to recipients with an address); how many went out."""
    sent = 0
    pending = Notification.objects.select_related("recipient__organisation", "case").filter(
        pk__in=notification_ids, emailed_at__isnull=True
    )
    for notification in pending:
        if not notification.recipient.email:
            continue
        email_message(notification).send()  # raises on a mail server failure: the task retries
        Notification.objects.filter(pk=notification.pk).update(emailed_at=timezone.now())
        sent += 1
    return sent
