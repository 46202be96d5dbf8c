from django.core.management.base import BaseCommand

from ops.env_vars import table


class Command(BaseCommand):
    help = "Print the table of every environment variable (the one in docs/operations.md)."

    def handle(self, *args, **options):
        self.stdout.write(table(), ending="")
