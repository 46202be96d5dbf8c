"""Push the report versions the FHIR server has not accepted yet (after an outage that outlasted
the push task's retries, or once TELEDIAG_FHIR_PUSH_URL is first set)."""

from django.core.management.base import BaseCommand, CommandError

from reports import services
from reports.push import PushFailed


class Command(BaseCommand):
    help = "POST every report version not yet accepted by the FHIR server (TELEDIAG_FHIR_PUSH_URL), oldest first."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=0, help="At most this many versions (0: all).")
        parser.add_argument(
            "--queue", action="store_true", help="Hand them to the workers instead of pushing from here."
        )

    def handle(self, *args, limit=0, queue=False, **options):
        if not services.fhir_push_enabled():
            raise CommandError("TELEDIAG_FHIR_PUSH_URL is not set: there is nowhere to push to.")
        versions = services.unpushed_versions()
        if limit:
            versions = versions[:limit]
        pushed = failed = 0
        for version in versions:
            label = f"{version.case.reference} v{version.number}"
            if queue:
                pushed += services.queue_fhir_push(version)
                continue
            try:
                services.fhir_push(version.pk)
            except PushFailed as exc:
                failed += 1
                self.stderr.write(f"{label}: {exc}")
                if exc.transient:  # the server is unreachable or busy: the rest would fail too
                    break
            else:
                pushed += 1
                self.stdout.write(f"{label}: pushed")
        verb = "queued" if queue else "pushed"
        self.stdout.write(f"{pushed} {verb}, {failed} failed.")
        if failed:
            raise CommandError("Some report versions were not accepted; see above.")
