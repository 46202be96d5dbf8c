"""Readiness checks of /readyz: database, broker, storage, an active model, migrations applied.

Built on django-health-check (its Database and Storage checks, and its HealthCheck base for ours).
Checks run in executor threads: each closes the database connection it opened there, or idle
connections would pile up (and a test database could not be dropped).
"""

import dataclasses
import datetime

from django.db import connections
from health_check.base import HealthCheck
from health_check.checks import Database, Storage
from health_check.exceptions import ServiceUnavailable


class _ClosesConnections:
    def run(self):
        try:
            self.check()
        finally:
            connections.close_all()


@dataclasses.dataclass
class Broker(_ClosesConnections, HealthCheck):
    """The Celery broker accepts a connection (Redis, RabbitMQ or the filesystem transport)."""

    timeout: datetime.timedelta = dataclasses.field(default=datetime.timedelta(seconds=3), repr=False)

    def check(self):
        from celery import current_app as app  # the project's app (telediag.celery), set as current

        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=self.timeout.total_seconds())
        except Exception as exc:  # noqa: BLE001 - kombu raises transport-specific errors
            raise ServiceUnavailable(f"Broker unreachable ({type(exc).__name__})") from exc


@dataclasses.dataclass
class ActiveModel(_ClosesConnections, HealthCheck):
    """A model version is active and its file is where workers load it from."""

    def check(self):
        from training import model_store, registry

        version = registry.get_active_version()
        if version is None:
            raise ServiceUnavailable("No active model version: promote one")
        if not model_store.is_available(version):
            raise ServiceUnavailable(f"The file of the active model version {version.name} is missing")


@dataclasses.dataclass
class Migrations(_ClosesConnections, HealthCheck):
    """Every migration of the code is applied to the database (a deploy ran `migrate`)."""

    def check(self):
        from django.db.migrations.executor import MigrationExecutor

        executor = MigrationExecutor(connections["default"])
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            raise ServiceUnavailable(f"{len(pending)} migration(s) not applied: run `manage.py migrate`")


READINESS_CHECKS = (Database, Broker, Storage, ActiveModel, Migrations)
