"""Celery tasks by name, so that a service can queue a task whose module imports that service.

A task module calls its services; a service that imported the task module back would close an
import cycle. The app's registry holds every task (autodiscovered), keyed by its name.
"""

from celery import current_app


def task_named(name):
    return current_app.tasks[name]
