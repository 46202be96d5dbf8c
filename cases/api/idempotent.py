"""``Idempotency-Key`` on ``POST /api/cases/``: a client that retries after a timeout gets the
case its first request created (201 once, then 200 with the same body), never a second case."""

from rest_framework import status
from rest_framework.response import Response

from core.errors import DomainError
from idempotency import services as idempotency

SCOPE = "cases.submit"
HEADER = "Idempotency-Key"
# Headers of the first answer that a replay repeats.
REPLAYED_HEADERS = ("Location", "Preference-Applied")


def submission_fingerprint(user, data):
    """The request's content: the same key with other content is refused, never replayed."""
    return idempotency.fingerprint(
        user.pk,
        _pk(data.get("patient")),
        data.get("clinical_notes", ""),
        data.get("priority"),
        _pk(data.get("laboratory")),
        _pk(data.get("model_version")),
        files=data.get("images") or (),
    )


def _pk(value):
    return getattr(value, "pk", value)


def submit_once(request, data, key, submit):
    """Run ``submit()`` (which creates the case and returns its 201 Response) once per key and user."""
    try:
        key = idempotency.clean_key(key)
        answer = {}

        def action(record):
            response = answer["response"] = submit()
            record.resource_id = response.data.get("id")
            record.body = response.data
            record.headers = {name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)}

        outcome = idempotency.run_once(
            user=request.user,
            scope=SCOPE,
            key=key,
            fingerprint=submission_fingerprint(request.user, data),
            action=action,
        )
    except idempotency.IdempotencyError as exc:
        error = DomainError(exc.message, details={"idempotency_key": [exc.message]})
        error.code, error.http_status = exc.code, exc.http_status
        raise error from None
    if not outcome.replayed:
        return answer["response"]
    headers = {**outcome.record.headers, "Idempotent-Replayed": "true"}
    return Response(outcome.record.body, status=status.HTTP_200_OK, headers=headers)
