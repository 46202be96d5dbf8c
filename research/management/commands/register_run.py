from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ml.artifacts import read_json
from training import registry


class Command(BaseCommand):
    help = (
        "Register a training run folder made elsewhere (python -m ml.pipeline or ml.batch, "
        "for example on a GPU machine): FOLDER holds metadata.json and the model file it names, whose bytes must "
        "match the recorded sha256. The version is registered, not activated (see promote)."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", help="run folder (metadata.json + model.keras), or its metadata.json")
        parser.add_argument("--name", help="version name (default: architecture and training time)")
        parser.add_argument("--notes", default="", help="free text stored with the version")

    def handle(self, *args, **options):
        path = Path(options["folder"]).expanduser()
        folder = path.parent if path.name == "metadata.json" else path
        try:
            metadata = read_json(folder / "metadata.json")
        except (OSError, ValueError) as exc:
            raise CommandError(f"{folder} is not a training run folder: cannot read metadata.json ({exc})") from exc
        missing = [key for key in ("architecture", "input_size", "sha256") if key not in metadata]
        if missing:
            raise CommandError(f"{folder / 'metadata.json'} lacks {', '.join(missing)}: not a training run's metadata")
        model_path = folder / metadata.get("model_file", registry.MODEL_FILE)
        result = {**metadata, "model_path": str(model_path), "output_dir": str(folder)}
        existing = registry.find_registered(result)
        try:
            version = registry.register_model(result, name=options["name"], notes=options["notes"])
        except registry.RegistryError as exc:
            raise CommandError(str(exc)) from exc
        test = (version.record.metrics or {}).get("test", {}).get("accuracy")
        state = "already registered as" if existing is not None else "registered as"
        self.stdout.write(
            f"{folder}: {state} {version.name} ({version.architecture}, {version.input_size}px"
            + (f", test accuracy {test:.2%}" if test is not None else "")
            + ")"
        )
