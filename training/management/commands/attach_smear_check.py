from django.core.management.base import BaseCommand, CommandError

from ml.artifacts import read_json
from training import registry


class Command(BaseCommand):
    help = (
        "Store a fitted 'not a stained blood smear' check on an existing model version (for models trained "
        "before retrain fitted one). FILE: a smear_check.json (from a retrain output folder or a model_report "
        "folder) or a run's metadata.json. The check must have been fitted at 224 px."
    )

    def add_arguments(self, parser):
        parser.add_argument("version", help="model version name or id")
        parser.add_argument("file", help="smear_check.json or metadata.json")

    def handle(self, *args, **options):
        try:
            data = read_json(options["file"])
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc}") from exc
        try:
            version = registry.attach_smear_check(options["version"], data)
        except registry.RegistryError as exc:
            raise CommandError(str(exc)) from exc
        rate = registry.smear_check_false_flag_rate(version)
        check = registry.smear_check_for(version)
        self.stdout.write(
            f"Stored the smear check on model version {version.name} (threshold {check.threshold:.2f}, fitted on "
            f"{check.n_fit} images"
            + (f"; flags {rate:.2%} of real validation smears" if rate is not None else "")
            + ")."
        )
