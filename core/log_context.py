"""What the current log lines are about: the request, case and Celery task ids (contextvars).

The request id is set by ops.middleware.RequestIdMiddleware, the task id by a Celery signal
(ops.worker_signals), the case id by the code that works on a case (``bind_case``). The
ContextFilter puts them on every record, for the JSON formatter and the plain one. Ids only:
never a patient's name.
"""

import contextvars
import logging

request_id = contextvars.ContextVar("request_id", default="")
case_id = contextvars.ContextVar("case_id", default="")
task_id = contextvars.ContextVar("task_id", default="")
_FIELDS = (("request_id", request_id), ("case_id", case_id), ("task_id", task_id))


def bind_case(pk):
    """Mark the following log lines of this request or task as about case ``pk``."""
    return case_id.set(str(pk) if pk is not None else "")


class ContextFilter(logging.Filter):
    def filter(self, record):
        parts = []
        for name, var in _FIELDS:
            value = getattr(record, name, None) or var.get()
            setattr(record, name, value)
            if value:
                parts.append(f"{name}={value}")
        record.context = (" [" + " ".join(parts) + "]") if parts else ""
        return True


def json_formatter(**options):
    """python-json-logger's formatter, without the plain format's ``context`` text (the ids are fields)."""
    from pythonjsonlogger.core import RESERVED_ATTRS
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(reserved_attrs=[*RESERVED_ATTRS, "context"], **options)
