"""Celery signal hooks of every worker: the task id on each log line of the task."""

from celery.signals import task_postrun, task_prerun

from core import log_context

_tokens = {}


@task_prerun.connect
def _bind_task(task_id=None, **kwargs):
    _tokens[task_id] = (log_context.task_id.set(task_id or ""), log_context.case_id.set(""))


@task_postrun.connect
def _unbind_task(task_id=None, **kwargs):
    tokens = _tokens.pop(task_id, None)
    if tokens:
        log_context.case_id.reset(tokens[1])
        log_context.task_id.reset(tokens[0])
