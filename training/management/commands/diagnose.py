import csv
import json

from django.core.management.base import BaseCommand, CommandError

from training import gates, registry, services


class Command(BaseCommand):
    help = (
        "Classify image files or folders (searched recursively) with a registered model (default: active), "
        "using exactly the serving preprocessing and the portal's gates (smear check, OOD score, low confidence: "
        "the flag column, empty when not flagged). Unreadable files are reported in the output."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
        parser.add_argument("--model", metavar="VERSION", help="model version name or id (default: active)")
        parser.add_argument("--format", choices=("csv", "json"), default="csv")
        parser.add_argument("--batch-size", type=int, default=32)

    def handle(self, *args, **options):
        try:
            version = registry.resolve_version(options["model"])
            rows = services.diagnose_paths(options["paths"], version, batch_size=options["batch_size"])
        except (registry.RegistryError, services.TrainingError) as exc:
            raise CommandError(str(exc)) from exc
        if not rows:
            raise CommandError("No image files found in the given path(s).")
        names = list(version.class_names)
        if options["format"] == "json":
            payload = {
                "model": {
                    "name": version.name,
                    "architecture": version.architecture,
                    "sha256": version.sha256,
                    "input_size": version.input_size,
                    "class_names": names,
                },
                "results": rows,
            }
            self.stdout.write(json.dumps(payload, indent=2))
        else:
            writer = csv.writer(self.stdout, lineterminator="\n")
            writer.writerow(
                ["path", "label", "confidence", *(f"p_{name}" for name in names), "ood_score", "flag", "error"]
            )
            for row in rows:
                probabilities = row["probabilities"] or {}
                writer.writerow(
                    [
                        row["path"],
                        row["label"] or "",
                        "" if row["confidence"] is None else f"{row['confidence']:.6f}",
                        *("" if name not in probabilities else f"{probabilities[name]:.6f}" for name in names),
                        "" if row.get("ood_score") is None else f"{row['ood_score']:.4f}",
                        gates.flag_text(row.get("flags") or []),
                        row["error"] or "",
                    ]
                )
        failed = sum(1 for row in rows if row["error"])
        if failed:
            self.stderr.write(f"{len(rows) - failed} file(s) classified, {failed} could not be read.")
