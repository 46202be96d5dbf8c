from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from research import ensembles
from training import registry, services


class Command(BaseCommand):
    help = (
        "Register the average of two or more model versions trained on the same split as a model version "
        "of its own, evaluated on that split's validation and test images."
    )

    def add_arguments(self, parser):
        parser.add_argument("versions", nargs="+", metavar="VERSION", help="member model version names or ids")
        parser.add_argument("--data", required=True, metavar="DIR", help="the labelled image folder of the split")
        parser.add_argument("--name", help="name of the new version (default: ensemble-<UTC time>)")
        parser.add_argument("--output", metavar="DIR", help="work folder (default: var/training/ensemble-<time>)")

    def handle(self, *args, **options):
        try:
            version = ensembles.register_ensemble(
                options["versions"],
                options["data"],
                name=options["name"],
                output_dir=Path(options["output"]).expanduser() if options["output"] else None,
                log=self.stdout.write,
            )
        except (services.TrainingError, registry.RegistryError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(services.describe_metrics(version))
        self.stdout.write(self.style.SUCCESS(f"Registered the ensemble as {version.name}."))
