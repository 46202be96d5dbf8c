"""`python manage.py monitoring_backfill`: record the outcome of every case signed before monitoring
existed (or rewrite them all, e.g. after a model version got its OOD threshold), then check alerts.

Safe to run again: each case keeps one outcome, rewritten from its current diagnosis.
"""

from django.core.management.base import BaseCommand

from monitoring.alerts import evaluate_all
from monitoring.outcomes import backfill


class Command(BaseCommand):
    help = "Record the AI suggestion and the diagnosis of every signed case (monitoring), then check alerts."

    def add_arguments(self, parser):
        parser.add_argument("--no-alerts", action="store_true", help="Only record outcomes; raise no alert.")

    def handle(self, *args, no_alerts=False, **options):
        recorded = backfill()
        self.stdout.write(f"Recorded the outcome of {recorded} signed case(s).")
        if not no_alerts:
            self.stdout.write(f"Raised {evaluate_all()} alert(s).")
