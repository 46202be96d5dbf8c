"""Errors raised by the services of every app; the API and the portal turn them into clear messages."""

from django.core.exceptions import PermissionDenied


class DomainError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, message, *, details=None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidTransition(DomainError):
    code = "invalid_transition"


class AlreadySigned(DomainError):
    code = "already_signed"
    http_status = 409


class UploadRejected(DomainError):
    """One or more files of an upload are unusable; details maps each file name to its reason."""

    code = "upload_rejected"


class NotAllowed(DomainError, PermissionDenied):
    """The user may see the object but their role may not do this (403; a PermissionDenied, so the
    portal answers 403 too)."""

    code = "permission_denied"
    http_status = 403
