"""A real Celery worker whose analysis can be made slow or fatal, for the integration tests.

    python -m tests.inference.faulty_worker worker -Q inference ...   (celery's own arguments)

FAULT_ANALYSIS_DELAY_S=N sleeps N seconds before each analysis (time to kill the child mid-task);
FAULT_ANALYSIS_KILLS_WORKER=1 makes every analysis SIGKILL its own worker process. An analysis is
one job's (``inference.worker.analyse``) or a message's several jobs' (``inference.batching``). The faults are
patched in here, in the worker's parent before the pool forks, so production code has no test hooks.
"""

import os
import signal
import sys
import time

import django


def _with_faults(analyse):
    delay = float(os.environ.get("FAULT_ANALYSIS_DELAY_S") or 0)
    kills = os.environ.get("FAULT_ANALYSIS_KILLS_WORKER") == "1"

    def analyse_with_faults(jobs):
        if kills:
            os.kill(os.getpid(), signal.SIGKILL)
        if delay > 0:
            time.sleep(delay)
        return analyse(jobs)

    return analyse_with_faults


def main(argv):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telediag.settings_test")
    django.setup()
    from inference import batching, worker
    from telediag.celery import app

    worker.analyse = _with_faults(worker.analyse)
    batching._analyse_batch = _with_faults(batching._analyse_batch)
    app.worker_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
