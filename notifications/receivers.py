"""How notifications answer the other apps' signals (connected in NotificationsConfig.ready)."""

from django.dispatch import receiver

from cases.models import Case
from cases.signals import case_amended, case_signed, case_submitted
from inference.signals import analysis_failed
from notifications import services


@receiver(case_signed, dispatch_uid="notifications-case-signed")
def on_case_signed(sender, case, review, **kwargs):
    services.notify_case_signed(case, review)


@receiver(case_amended, dispatch_uid="notifications-case-amended")
def on_case_amended(sender, case, review, previous=None, **kwargs):
    services.notify_case_signed(case, review, amended=True, previous=previous)


@receiver(case_submitted, dispatch_uid="notifications-urgent-case")
def on_case_submitted(sender, case, **kwargs):
    if case.priority == Case.Priority.URGENT:
        services.notify_urgent_case(case)


@receiver(analysis_failed, dispatch_uid="notifications-analysis-failed")
def on_analysis_failed(sender, case_id, reason, **kwargs):
    case = Case.objects.select_related("submitted_by").filter(pk=case_id).first()
    if case is not None and not case.is_final:  # once signed, a failed re-run changes nothing for the site
        services.notify_analysis_failed(case, reason)
