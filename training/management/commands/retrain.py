from django.core.management.base import BaseCommand, CommandError

from training import services
from training.options import STUDY_ARCHITECTURES, option_fields

TYPES = {"int": int, "float": float, "path": str, "choice": str}


class Command(BaseCommand):
    help = (
        "Train one or more architectures on a labelled image folder (<DIR>/<Class>/*.jpg), evaluate each on "
        "the held-out test split, register each as a model version and print a comparison table. "
        "Re-running with the same --output resumes."
    )

    def add_arguments(self, parser):
        # One argument per RetrainOptions field (training.options), named and defaulted there.
        for option, default in option_fields():
            meta, name = option.metadata, option.name
            if meta["kind"] == "architectures":
                which = parser.add_mutually_exclusive_group(required=True)
                which.add_argument(meta["flag"], nargs="+", dest=name, metavar=meta["metavar"], help=meta["help"])
                which.add_argument(
                    "--all", action="store_true", help=f"the study's four: {', '.join(STUDY_ARCHITECTURES)}"
                )
            elif meta["kind"] == "multichoice":
                parser.add_argument(
                    meta["flag"],
                    dest=name,
                    nargs="+",
                    default=list(default),
                    choices=meta["choices"],
                    metavar=meta["metavar"],
                    help=meta["help"],
                )
            elif meta["kind"] == "bool":
                parser.add_argument(
                    meta["flag"], dest=name, action="store_true" if not default else "store_false", help=meta["help"]
                )
            else:
                parser.add_argument(
                    meta["flag"],
                    dest=name,
                    type=TYPES[meta["kind"]],
                    default=default,
                    choices=meta["choices"],
                    metavar=meta["metavar"],
                    help=meta["help"],
                    required=name == "data_dir",
                )

    def handle(self, *args, **options):
        from django.conf import settings

        values = {option.name: options[option.name] for option, _ in option_fields()}
        if options["all"]:
            values["architectures"] = list(STUDY_ARCHITECTURES)
        values["weights_dir"] = values["weights_dir"] or settings.LOCAL_WEIGHTS_DIR or None
        request = services.RetrainOptions(**values)
        verbosity = options["verbosity"]
        progress = False if verbosity == 0 else (2 if verbosity == 1 else True)
        try:
            result = services.retrain(request, log=self.stdout.write, progress=progress)
        except services.TrainingError as exc:
            raise CommandError(str(exc)) from exc
        names = ", ".join(v.name for v in result.versions)
        self.stdout.write(self.style.SUCCESS(f"Registered {len(result.versions)} model version(s): {names}"))
