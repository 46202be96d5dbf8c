from django.core.management.base import BaseCommand, CommandError

from training import registry, services


class Command(BaseCommand):
    help = "Make a registered model version the one active model (by name or id)."

    def add_arguments(self, parser):
        parser.add_argument("version", metavar="VERSION", help="model version name or id")

    def handle(self, *args, **options):
        previous = registry.get_active_version()
        try:
            version = services.promote(options["version"])
        except services.TrainingError as exc:
            raise CommandError(str(exc)) from exc
        was = f" (was {previous.name})" if previous and previous.pk != version.pk else ""
        self.stdout.write(self.style.SUCCESS(f"{version.name} is now the active model{was}."))
