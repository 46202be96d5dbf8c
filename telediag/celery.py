import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telediag.settings")

app = Celery("telediag")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Heartbeat file for container health checks (ops.heartbeat; off unless TELEDIAG_WORKER_HEARTBEAT_FILE).
from ops.heartbeat import Heartbeat  # noqa: E402

app.steps["consumer"].add(Heartbeat)
