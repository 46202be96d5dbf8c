"""Failures of the file storage that a user can do nothing about but wait (a full disk)."""

from core.errors import DomainError


class StorageUnavailable(DomainError):
    """The images could not be written (disk full, storage down): nothing was saved; try again later."""

    code = "storage_unavailable"
    http_status = 503

    def __init__(self, message=None, **kwargs):
        super().__init__(
            message
            or "The images cannot be stored right now (the server's storage is full or unavailable); "
            "nothing was saved. Try again in a few minutes.",
            **kwargs,
        )
