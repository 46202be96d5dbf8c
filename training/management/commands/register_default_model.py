from django.core.management.base import BaseCommand, CommandError

from training import registry
from training.default_model import ensure_default_model


class Command(BaseCommand):
    help = "Register the model(s) shipped under SHIPPED_MODEL_DIR and activate one if none is active."

    def add_arguments(self, parser):
        parser.add_argument("--no-activate", action="store_true", help="register only")

    def handle(self, *args, **options):
        try:
            versions = ensure_default_model(activate_if_none=not options["no_activate"])
        except registry.RegistryError as exc:
            raise CommandError(str(exc)) from exc
        if not versions:
            self.stdout.write("No shipped model found.")
        for version in versions:
            state = " (active)" if registry.get_active_version() == version else ""
            self.stdout.write(f"{version.name}: {registry.model_path(version)}{state}")
