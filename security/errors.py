"""API errors of the security layer (rendered with the one error body by core.api_errors)."""

from rest_framework import exceptions, status


class LockedOut(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "locked_out"
    default_detail = (
        "Too many failed sign-ins for this account from this address; sign-in is locked for a while. "
        "Ask your lab admin if you forgot your password."
    )
