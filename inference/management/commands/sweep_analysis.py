"""`python manage.py sweep_analysis`: make sure no AI analysis stays stuck (see inference.services.sweep).

Run it from cron or let Celery beat run the `inference.sweep_analysis` task every minute; both are
safe together. `--loop SECONDS` keeps it running (for a container without beat).
"""

import time

from django.conf import settings
from django.core.management.base import BaseCommand

from inference.services import sweep


class Command(BaseCommand):
    help = "Re-publish analysis jobs queued too long, recover abandoned ones, start cases waiting for a model."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=int,
            default=None,
            metavar="SECONDS",
            help=f"Re-publish queued jobs waiting longer than this (default INFERENCE_REQUEUE_AFTER_S, "
            f"now {settings.INFERENCE_REQUEUE_AFTER_S}).",
        )
        parser.add_argument("--loop", type=float, default=None, metavar="SECONDS", help="Sweep again every SECONDS.")

    def handle(self, *args, older_than=None, loop=None, **options):
        while True:
            counts = sweep(requeue_after_s=older_than)
            self.stdout.write(
                "Re-published {republished}, recovered {recovered} abandoned, failed {failed_abandoned} "
                "after all attempts, started {waiting_cases_started} case(s) that waited for a model, "
                "moved {cases_finished} finished case(s) to review.".format(**counts)
            )
            if not loop:
                return
            time.sleep(loop)
