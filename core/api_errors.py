"""One error body for every API failure: ``{"error": {"code", "message", "details"}}``.

- ``code``: a stable, machine-readable word (``invalid``, ``not_found``, ``already_signed``...);
- ``message``: one sentence for a person, naming the fields at fault where there are some;
- ``details``: an object; for invalid input it maps each field (or, for a rejected upload, each
  file name) to what is wrong with it; ``{}`` when there is nothing more to say.

The statuses: 400 malformed input, broken business rule or impossible state change; 401 not
logged in (or a bad token); 403 a visible object the user's role may not act on; 404 an object
that does not exist *or that the user may not see* (ids of other organisations never leak);
405/406/415 wrong method or content type; 409 a conflict such as a second signature; 429
throttled; 500 anything unexpected (logged with its traceback; no internals in the body).

``exception_handler`` is DRF's EXCEPTION_HANDLER. ``page_not_found`` and ``server_error`` give the
same body to /api/ addresses that no view answers; wire them as ``handler404``/``handler500``.
"""

import logging

from django.conf import settings
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
    ValidationError as DjangoValidationError,
)
from django.http import Http404, JsonResponse
from django.views import defaults
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler, set_rollback

from core.errors import DomainError

logger = logging.getLogger("telediag.api")

# Sent with every 401: scripts authenticate with "Authorization: Token <key>".
WWW_AUTHENTICATE = 'Token realm="api"'
API_PREFIX = "/api/"


def error_body(code, message, details=None):
    return {"error": {"code": code, "message": message, "details": details if details is not None else {}}}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        set_rollback()
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.http_status)
    limit = _request_limit_error(exc)
    if limit is not None:
        return limit
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_validation_detail(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    if not isinstance(exc, exceptions.APIException):
        return _unexpected(exc, context)

    response = drf_exception_handler(exc, context)  # status, headers (Retry-After...), rollback
    if response is None:  # pragma: no cover - DRF handles every APIException
        return _unexpected(exc, context)

    code = _code(exc)
    if isinstance(exc, exceptions.ValidationError):
        details = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        message = _validation_message(details)
    elif isinstance(exc, exceptions.ParseError):
        message = _detail_text(response.data)
        details = {"body": [message]}
    elif isinstance(exc, exceptions.Throttled):
        message, details = _detail_text(response.data), {"retry_after": exc.wait}
    else:
        message, details = _detail_text(response.data), {}

    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        # DRF answers 403 when the first authentication class (the session) names no scheme;
        # a missing or bad credential is a 401, and the token scheme is always accepted.
        response.status_code = status.HTTP_401_UNAUTHORIZED
        if "WWW-Authenticate" not in response:
            response["WWW-Authenticate"] = WWW_AUTHENTICATE
    response.data = error_body(code, message, details)
    return response


def _request_limit_error(exc):
    # Django's own limits on a request body (raised while the body is parsed): the client's fault.
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body(
                "request_too_large",
                f"The request body is larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes accepted "
                "outside of files.",
            ),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, TooManyFilesSent):
        return Response(
            error_body(
                "too_many_files",
                f"A request carries at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files.",
            ),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, TooManyFieldsSent):
        return Response(
            error_body(
                "too_many_fields",
                f"A request carries at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields.",
            ),
            status=status.HTTP_400_BAD_REQUEST,
        )
    return None


def _unexpected(exc, context):
    if settings.DEBUG:
        return None  # let Django show its debug page
    view = context.get("view")
    logger.error(
        "Unhandled error in API view %s",
        type(view).__name__ if view else "?",
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    set_rollback()
    return Response(
        error_body("server_error", "Something went wrong on the server; the error has been logged."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _code(exc):
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else exc.default_code


def _django_validation_detail(exc):
    if hasattr(exc, "error_dict"):
        return {
            ("non_field_errors" if field == "__all__" else field): messages
            for field, messages in exc.message_dict.items()
        }
    return exc.messages


def _validation_message(details):
    fields = [name for name in details if name != "non_field_errors"]
    if fields:
        plural = "s" if len(fields) > 1 else ""
        return f"The request is not valid; check the field{plural} {', '.join(map(str, fields))}."
    general = details.get("non_field_errors")
    if isinstance(general, list) and general:
        return str(general[0])
    return "The request is not valid."


def _detail_text(data):
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])
    return str(data)


# --------------------------------------------------------------------------------------------
# Addresses no view answers (Django's handler404/handler500, DEBUG off)


def _is_api(request):
    return request.path_info.startswith(API_PREFIX)


def page_not_found(request, exception, template_name=defaults.ERROR_404_TEMPLATE_NAME):
    if _is_api(request):
        return JsonResponse(error_body("not_found", "There is no API endpoint at this address."), status=404)
    return defaults.page_not_found(request, exception, template_name)


def server_error(request, template_name=defaults.ERROR_500_TEMPLATE_NAME):
    if _is_api(request):
        return JsonResponse(
            error_body("server_error", "Something went wrong on the server; the error has been logged."),
            status=500,
        )
    return defaults.server_error(request, template_name)


# --------------------------------------------------------------------------------------------
# The error body in the OpenAPI schema


class ApiErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. invalid, not_found, already_signed.")
    message = serializers.CharField(help_text="What went wrong, in one sentence for a person.")
    details = serializers.DictField(
        help_text="For invalid input: each field (or, for rejected uploads, each file name) and what is wrong "
        "with it. Empty when there is nothing more to say."
    )


class ApiErrorSerializer(serializers.Serializer):
    error = ApiErrorBodySerializer()


ERROR_DESCRIPTIONS = {
    400: "Invalid input (details name each field at fault), a broken rule or an impossible state change.",
    401: "Not authenticated, or the token is invalid.",
    403: "Your role may not do this.",
    404: "No such object, or not one you may see (for a list: no such page).",
    409: "Conflict: someone else changed this first (for example, the case is already signed).",
    413: "The request body (outside of files) is too large.",
    415: "Unsupported content type for the request body.",
    429: "Too many requests; retry after details.retry_after seconds.",
}


def error_responses(*statuses):
    """OpenAPI responses for the given error statuses, all with the one error body."""
    return {code: OpenApiResponse(ApiErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in statuses}


__all__ = [
    "ApiErrorSerializer",
    "error_body",
    "error_responses",
    "exception_handler",
    "page_not_found",
    "server_error",
]
