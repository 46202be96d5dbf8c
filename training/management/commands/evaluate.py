import json

from django.core.management.base import BaseCommand, CommandError

from training import registry, services


class Command(BaseCommand):
    help = (
        "Evaluate a registered model (default: the active one) on a labelled image folder with the training "
        "metrics: accuracy, loss, per-class precision/recall/F1, macro-F1, confusion matrix, ECE."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, metavar="DIR", help="labelled folder (<DIR>/<Class>/*.jpg)")
        parser.add_argument("--model", metavar="VERSION", help="model version name or id (default: active)")
        parser.add_argument(
            "--format", choices=("text", "json"), default="text", help="json: machine-readable JSON only on stdout"
        )
        parser.add_argument("--batch-size", type=int, default=32)
        parser.add_argument("--max-per-class", type=int, metavar="N", help="first N images per class")
        parser.add_argument(
            "--split",
            choices=("train", "val", "test"),
            dest="split_part",
            help="only this part of the split recorded with the model (DIR: the images it was "
            "trained on), e.g. to reproduce its recorded test accuracy",
        )
        parser.add_argument(
            "--flips", action="store_true", help="test-time augmentation: average over the image and its three flips"
        )

    def handle(self, *args, **options):
        try:
            version = registry.resolve_version(options["model"])
            result = services.evaluate_version(
                version,
                options["data"],
                batch_size=options["batch_size"],
                max_per_class=options["max_per_class"],
                split_part=options["split_part"],
                flips=options["flips"],
            )
        except (registry.RegistryError, services.TrainingError) as exc:
            raise CommandError(str(exc)) from exc
        if options["format"] == "json":
            self.stdout.write(json.dumps(result, indent=2))
            return
        data = result["data"]
        self.stdout.write(f"Model {version.name} ({version.architecture}, {version.input_size}px)")
        part = f", the {data['split_part']} part of its recorded split" if data["split_part"] else ""
        flips = ", mean over 4 flips" if data["flips"] else ""
        self.stdout.write(
            f"Data {data['root']}{part}: {data['images']} images "
            f"({', '.join(f'{k} {v}' for k, v in data['counts'].items())}){flips}"
        )
        self.stdout.write(services.format_metrics(result["metrics"]))
