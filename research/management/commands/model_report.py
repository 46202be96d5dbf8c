import json

from django.core.management.base import BaseCommand, CommandError

from research import reports
from training import registry, services


class Command(BaseCommand):
    help = (
        "Robustness report for a registered model (default: active) on the test split recorded with it: "
        "accuracy under site shifts written independently of the training augmentation (leave-one-family-out) "
        "and the OOD flag rates; the augmentation-family colour shifts, colour normalisation and grayscale; "
        "the colour-only baseline; the "
        "'not a stained smear' check's false-flag rate; single-image CPU latency and file size. Saves "
        "report.json, report.txt and smear_check.json (the check's parameters) in the output folder; "
        "--attach-smear-check also stores the check on the model version, so serving flags non-smears."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--data",
            required=True,
            metavar="DIR",
            help="the labelled image folder the model was trained on (<DIR>/<Class>/*.jpg)",
        )
        parser.add_argument("--model", metavar="VERSION", help="model version name or id (default: active)")
        parser.add_argument(
            "--format", choices=("text", "json"), default="text", help="json: the report as JSON only on stdout"
        )
        parser.add_argument(
            "--output-dir", metavar="DIR", help="where to save the files (default: VAR_DIR/reports/<version>-<time>)"
        )
        parser.add_argument("--batch-size", type=int, default=32)
        parser.add_argument(
            "--latency-runs",
            type=int,
            default=reports.DEFAULT_LATENCY_RUNS,
            metavar="N",
            help="timed single-image predictions (median reported)",
        )
        parser.add_argument(
            "--smear-size",
            type=int,
            default=reports.DEFAULT_SMEAR_SIZE,
            metavar="PX",
            help="image size the smear check works at",
        )
        parser.add_argument(
            "--required-margin",
            type=float,
            default=reports.DEFAULT_REQUIRED_MARGIN,
            metavar="POINTS",
            help="accuracy points the model must beat the colour-only baseline by on colour-normalised images",
        )
        parser.add_argument(
            "--attach-smear-check",
            action="store_true",
            help="store the fitted smear check on the model version (for models trained "
            "before retrain fitted one; needs --smear-size 224)",
        )

        parser.add_argument(
            "--attach-ood",
            action="store_true",
            help="store the OOD model (fitted on the training split, threshold calibrated on the validation "
            "split) on the model version, so serving flags images 'outside validated conditions'",
        )
        parser.add_argument("--no-site-shifts", action="store_true", help="skip the site-shift table and the OOD model")

    def handle(self, *args, **options):
        for name in ("batch_size", "latency_runs", "smear_size"):
            if options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
        as_json = options["format"] == "json"
        log = (
            (lambda line: self.stderr.write(line))
            if options["verbosity"] > 1 or (not as_json and options["verbosity"] > 0)
            else None
        )
        try:
            version = registry.resolve_version(options["model"])
            report = reports.build_model_report(
                version,
                options["data"],
                output_dir=options["output_dir"],
                batch_size=options["batch_size"],
                latency_runs=options["latency_runs"],
                smear_size=options["smear_size"],
                required_margin=options["required_margin"],
                attach_smear_check=options["attach_smear_check"],
                attach_ood=options["attach_ood"],
                site_shifts=not options["no_site_shifts"],
                log=log,
            )
        except (registry.RegistryError, services.TrainingError) as exc:
            raise CommandError(str(exc)) from exc
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, default=_json_default))
        else:
            self.stdout.write(reports.format_report(report))


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Not JSON serialisable: {type(value).__name__}")
