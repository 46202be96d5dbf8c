from django.core.management.base import BaseCommand, CommandError

from research import shipping
from training import registry


class Command(BaseCommand):
    help = (
        "Write a registered model version into the repository's models/ folder as the default model a "
        "fresh install registers (without optimizer state, with its metadata, split and plots)."
    )

    def add_arguments(self, parser):
        parser.add_argument("version", metavar="VERSION", help="model version name or id")
        parser.add_argument("--folder", help="folder name under models/ (default: the version's name)")
        parser.add_argument("--name", help="version name fresh installs register it under (default: the version's)")
        parser.add_argument(
            "--replace", action="store_true", help="remove the other shipped models, so this one is the only default"
        )

    def handle(self, *args, **options):
        try:
            version = registry.get_version(options["version"])
            folder = shipping.ship_version(version, options["folder"], name=options["name"], replace=options["replace"])
        except (registry.RegistryError, shipping.ShippingError) as exc:
            raise CommandError(str(exc)) from exc
        size = (folder / registry.MODEL_FILE).stat().st_size
        self.stdout.write(self.style.SUCCESS(f"Shipped {version.name} in {folder} ({size / 1e6:.1f} MB)."))
