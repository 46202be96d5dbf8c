import json

from django.core.management.base import BaseCommand, CommandError

from training import registry, services


class Command(BaseCommand):
    help = (
        "Compare registered model versions: the test-split table, and the mean and spread over them "
        "(name the versions of one recipe trained with several seeds)."
    )

    def add_arguments(self, parser):
        parser.add_argument("versions", nargs="+", metavar="VERSION", help="model version names or ids")
        parser.add_argument("--format", choices=("text", "json"), default="text")

    def handle(self, *args, **options):
        try:
            versions = [registry.get_version(ref) for ref in options["versions"]]
        except registry.RegistryError as exc:
            raise CommandError(str(exc)) from exc
        summary = {part: services.seed_spread(versions, part) for part in ("val", "test")}
        if options["format"] == "json":
            rows = [
                {
                    "name": v.name,
                    "architecture": v.architecture,
                    "input_size": v.input_size,
                    "split": (v.record.split or {}).get("mode"),
                    "seed": (v.record.split or {}).get("seed"),
                    "val": (v.record.metrics or {}).get("val"),
                    "test": (v.record.metrics or {}).get("test"),
                }
                for v in versions
            ]
            self.stdout.write(json.dumps({"versions": rows, "spread": summary}, indent=2))
            return
        self.stdout.write(services.comparison_table(versions))
        for part in ("val", "test"):
            if summary[part]["n"]:
                self.stdout.write("")
                self.stdout.write(services.format_seed_spread(summary[part]))
