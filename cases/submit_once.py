"""The portal's guard against a case submitted twice (a double click, a resent form, the back button).

The new-case form carries a one-time token. A submission with a token already used for the same
content by the same user creates nothing: the clinician is taken to the case it created. The same
token with other content (the form reused through the back button for another case) is a new case.
"""

from cases.models import Case
from cases.services import case_submit
from idempotency import services as idempotency

SCOPE = "cases.submit.portal"


def case_submit_once(
    *,
    token,
    user,
    patient,
    files,
    clinical_notes="",
    priority=Case.Priority.ROUTINE,
    laboratory=None,
    model_version=None,
    request=None,
):
    """case_submit, once per (user, token, content). Returns (case, replayed)."""
    fields = dict(
        user=user,
        patient=patient,
        files=files,
        clinical_notes=clinical_notes,
        priority=priority,
        laboratory=laboratory,
        model_version=model_version,
        request=request,
    )
    try:
        token = idempotency.clean_key(token)
    except idempotency.InvalidKey:  # no token (an old page) or a mangled one: no guard, as before
        return case_submit(**fields), False
    fingerprint = idempotency.fingerprint(
        user.pk,
        patient.pk,
        clinical_notes,
        priority,
        getattr(laboratory, "pk", None),
        getattr(model_version, "pk", None),
        files=files,
    )

    def action(record):
        record.resource_id = case_submit(**fields).pk

    outcome = idempotency.run_once(
        user=user,
        scope=SCOPE,
        key=f"{token[:190]}:{fingerprint[:32]}",
        fingerprint=fingerprint,
        action=action,
    )
    return Case.objects.get(pk=outcome.record.resource_id), outcome.replayed
