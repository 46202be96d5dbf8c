"""One error body for every API failure: {"error": {"code", "message", "details"}}."""
from django.core.exceptions import PermissionDenied, ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from cases.errors import DomainError


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(
            {"error": {"code": exc.code, "message": exc.message, "details": exc.details}},
            status=exc.http_status,
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        code, message, details = "invalid", "The request is not valid.", response.data
    elif isinstance(exc, (Http404, exceptions.NotFound)):
        code, message, details = "not_found", "Not found.", {}
    elif isinstance(exc, (PermissionDenied, exceptions.PermissionDenied)):
        code, message, details = "permission_denied", _detail_text(response.data), {}
    elif isinstance(exc, exceptions.APIException):
        code, message, details = exc.default_code, _detail_text(response.data), {}
    else:
        code, message, details = "error", _detail_text(response.data), {}
    response.data = {"error": {"code": code, "message": message, "details": details}}
    return response


def _detail_text(data):
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])
    return str(data)


__all__ = ["exception_handler", "status"]
