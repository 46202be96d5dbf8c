"""The review queue as a pathologist works it: filters, counts and each row's AI summary.

Every filter is a condition an index answers (the queue's partial index for urgency and dates, the
site and assignee foreign keys, the patient's MRN, the case's primary key); "flagged" is the case's
stored AI flag (``Case.ai_flagged``, kept by inference.flagging), read off a partial index of its
own in the queue's order. A page then reads its rows' AI summaries in two queries
(inference.status.ai_summaries): no query per row.
"""

from datetime import datetime, time, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from cases import access
from cases.models import Case
from inference.status import ai_summaries


def _day_start(day):
    return timezone.make_aware(datetime.combine(day, time.min))


def filtered_queue(user, filters):
    """The user's review queue narrowed by a valid ``QueueFilterForm`` (an invalid one filters nothing)."""
    queue = access.review_queue_for(user).select_related("assigned_to")
    if not filters.is_bound or not filters.is_valid():
        return queue
    data = filters.cleaned_data
    if data["q"].strip():
        queue = access.search_cases(queue, data["q"])
    if data["urgent"]:
        queue = queue.filter(priority=Case.Priority.URGENT)
    if data["mine"]:
        queue = queue.filter(assigned_to_id=user.pk)
    if data["site"]:
        queue = queue.filter(site_id=data["site"].pk)
    if data["date_from"]:
        queue = queue.filter(created_at__gte=_day_start(data["date_from"]))
    if data["date_to"]:
        queue = queue.filter(created_at__lt=_day_start(data["date_to"]) + timedelta(days=1))
    if data["flagged"]:
        queue = queue.filter(ai_flagged=True)  # a flagged or not-a-smear image, a failed analysis
    return queue


def queue_counts(user):
    """The whole queue's counts, whatever the filters: waiting, urgent, assigned to me.

    One query over the unsigned cases of the laboratory (the queue's partial index), however many.
    """
    return (
        access.review_queue_for(user)
        .order_by()
        .aggregate(
            waiting=Count("pk"),
            urgent=Count("pk", filter=Q(priority=Case.Priority.URGENT)),
            mine=Count("pk", filter=Q(assigned_to_id=user.pk)),
        )
    )


def waiting_text(seconds):
    """How long a case has waited, as a reader scans a queue: "25 min", "5 h 10 min", "3 days"."""
    minutes = max(0, int(seconds)) // 60
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} days"


def with_ai_summaries(cases, now=None):
    """Set ``ai`` (inference.status.ai_summaries) and ``waiting`` ("2 h 5 min") on each case of a page."""
    cases = list(cases)
    now = now or timezone.now()
    summaries = ai_summaries(case.pk for case in cases)
    for case in cases:
        case.ai = summaries.get(case.pk)
        case.waiting = waiting_text((now - case.created_at).total_seconds())
    return cases
