"""Services queue tasks by name (core.task_lookup): the name must resolve in a web process too,
where Celery itself imports no task module and nothing of the test suite has imported one."""

import subprocess
import sys

from django.conf import settings


def test_every_queued_task_is_registered_in_a_fresh_process():
    code = (
        "import sys, django; django.setup(); "
        "from core.task_lookup import task_named; "
        "from inference.services import ANALYSE_SMEAR_TASK; from training.services import RETRAIN_TASK; "
        "print(task_named(ANALYSE_SMEAR_TASK).name, task_named(RETRAIN_TASK).name, 'keras' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "telediag.settings_test",
            "TELEDIAG_TEST_DATABASE_URL": "sqlite:///unused.sqlite3",
        },
    )
    assert result.returncode == 0, result.stderr
    # Registered, and the web process still never loads Keras.
    assert result.stdout.split() == ["inference.analyse_smear", "training.tasks.retrain_task", "False"]
