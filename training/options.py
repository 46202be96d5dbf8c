"""What a retraining run is asked to do: ``RetrainOptions``, the one definition of its settings.

Every way of starting a run speaks this schema:

- `manage.py retrain` builds its arguments from the fields below (their ``flag`` and ``help``);
- the admin's Training run form builds its fields from them (training.forms) and validates
  through ``RetrainOptions.validate``;
- ``TrainingRun.options`` stores ``RetrainOptions.to_json()``;
- ``run_training_kwargs`` is what ``ml.pipeline.run_training`` receives, and
  ``arguments()`` the same recipe as command-line flags, which `retrain` and
  ``python -m ml.pipeline`` both accept (the pipeline has no Django, so a test keeps its
  flags and defaults equal to these).

``RetrainOptions.from_metadata`` reads the recipe a trained model recorded in its metadata.json, so
the shipped model can be retrained exactly. Nothing here imports Keras or Django models.
"""

from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

from ml import colour_normalisation
from ml.site_shifts import SITE_AUGMENTATION_FAMILIES
from training.errors import TrainingError

# The four architectures of the original study (what --all trains), and every one we can build.
STUDY_ARCHITECTURES = ("convnet", "mobilenetv2", "resnet50", "vgg19")
# Kept here so the admin form and argument checks need no Keras import; a test checks it matches
# ml.architectures.ARCHITECTURE_NAMES.
KNOWN_ARCHITECTURES = ("convnet", "convnet_bn", "mobilenetv2", "resnet50", "vgg19")
# What --site-augment accepts: the kinds whose crediting ml.site_shifts defines (numpy only, no Keras).
SITE_AUGMENTATIONS = tuple(SITE_AUGMENTATION_FAMILIES)
SPLIT_MODES = ("grouped", "random")
PROMOTE_CHOICES = ("best",)
DEFAULT_EPOCHS = 50


def _option(default, flag, help, *, kind, label, metavar=None, choices=None):
    """A RetrainOptions field: its default and how the command line and the admin form show it."""
    metadata = {"flag": flag, "help": help, "kind": kind, "label": label, "metavar": metavar, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class RetrainOptions:
    data_dir: object = _option(
        None,
        "--data",
        "labelled image folder with Benign/Early/Pre/Pro sub-folders (<DIR>/<Class>/*.jpg)",
        kind="path",
        label="Data folder",
        metavar="DIR",
    )
    architectures: list = _option(
        ["convnet"],
        "--arch",
        f"architecture(s): {', '.join(KNOWN_ARCHITECTURES)}",
        kind="architectures",
        label="Architectures",
        metavar="ARCH",
        choices=KNOWN_ARCHITECTURES,
    )
    epochs: int = _option(
        DEFAULT_EPOCHS, "--epochs", "training epochs (fewer if early stopping ends the run)", kind="int", label="Epochs"
    )
    image_size: int = _option(224, "--image-size", "square input size in pixels", kind="int", label="Image size")
    split_mode: str = _option(
        "grouped",
        "--split",
        "grouped: blocks of consecutive file numbers (≈ patients); random: image level",
        kind="choice",
        label="Split",
        choices=SPLIT_MODES,
    )
    seed: int = _option(42, "--seed", "seed of the split and of training", kind="int", label="Seed")
    batch_size: int = _option(32, "--batch-size", "images per training step", kind="int", label="Batch size")
    augment: bool = _option(True, "--no-augment", "train without augmentation", kind="bool", label="Augment")
    # PerImageColourStandardization instead of the usual scaling
    per_image_colour: bool = _option(
        False,
        "--per-image-colour",
        "standardise each image's R, G, B inside the model, so it cannot learn the stain's average colour",
        kind="bool",
        label="Per-image colour standardisation",
    )
    # PerImageLabStandardization (Reinhard's colour normalisation) instead
    lab_colour: bool = _option(
        False,
        "--lab-colour",
        "standardise each image's CIELAB L, a, b inside the model instead (Reinhard's colour normalisation: "
        "no colour cast or saturation to learn)",
        kind="bool",
        label="CIELAB colour standardisation",
    )
    balance_colour: bool = _option(
        False,
        "--balance-colour",
        "with --lab-colour: first scale each image's R, G, B to one mean (grey world), which cancels a "
        "camera's or lamp's channel gains",
        kind="bool",
        label="Grey-world balance before CIELAB",
    )
    # probability of a gray training image
    grayscale_augment: float = _option(
        0.0,
        "--grayscale-augment",
        "probability of turning a training image gray, so the model also learns from shape and texture "
        "(default 0: never)",
        kind="float",
        label="Grayscale augmentation",
        metavar="P",
    )
    # sigma of the per-image stain-amount jitter
    stain_augment: float = _option(
        0.0,
        "--stain-augment",
        "jitter each training image's stain amounts in optical density by up to SIGMA (0.05: 'HED-light'), "
        "so the model meets other labs' stains (default 0: off)",
        kind="float",
        label="Stain augmentation",
        metavar="SIGMA",
    )
    site_augment: list = _option(
        [],
        "--site-augment",
        "add what differs between referring sites to the augmentation: white_balance (lamp and camera), "
        "chroma (colour rendering), defocus, scale (resolution), noise, jpeg (compression) (default: none)",
        kind="multichoice",
        label="Site augmentation",
        metavar="KIND",
        choices=SITE_AUGMENTATIONS,
    )
    # Adam's initial rate; None: each architecture's default
    learning_rate: float = _option(
        None,
        "--learning-rate",
        "Adam's initial learning rate, where the cosine schedule starts (default: 1e-3, and 1e-4 for vgg19, "
        "which has no normalisation layers)",
        kind="float",
        label="Learning rate",
    )
    promote: str = _option(
        None,
        "--promote",
        "best: activate the model with the best validation accuracy",
        kind="choice",
        label="Promote",
        choices=PROMOTE_CHOICES,
    )
    weights_dir: object = _option(
        None,
        "--weights-dir",
        "folder of local ImageNet 'notop' weight files",
        kind="path",
        label="Weights folder",
        metavar="DIR",
    )
    max_per_class: int = _option(
        None,
        "--max-per-class",
        "first N images per class (smoke runs)",
        kind="int",
        label="Max. images per class",
        metavar="N",
    )
    output_dir: object = _option(
        None,
        "--output",
        "work folder (checkpoints); re-running with the same one resumes",
        kind="path",
        label="Output folder",
        metavar="DIR",
    )

    @property
    def normalisation(self):
        """The in-model normalisation (ml.architectures.NORMALISATIONS; None: the architecture's own)."""
        return colour_normalisation.from_switches(self.per_image_colour, self.lab_colour, self.balance_colour)

    def validate(self, check_paths=True):
        """Check every argument; with ``check_paths`` also the folders. Returns a normalised copy."""
        archs = list(dict.fromkeys(self.architectures or []))
        if not archs:
            raise TrainingError("Name at least one architecture (or use --all).")
        unknown = [a for a in archs if a not in KNOWN_ARCHITECTURES]
        if unknown:
            raise TrainingError(
                f"Unknown architecture(s): {', '.join(unknown)}. Choose from {', '.join(KNOWN_ARCHITECTURES)}."
            )
        for label, value, minimum in (
            ("--epochs", self.epochs, 1),
            ("--image-size", self.image_size, 8),
            ("--batch-size", self.batch_size, 1),
        ):
            if not isinstance(value, int) or value < minimum:
                raise TrainingError(f"{label} must be an integer >= {minimum}, not {value!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TrainingError(f"--seed must be an integer, not {self.seed!r}.")
        switches = (self.augment, self.per_image_colour, self.lab_colour, self.balance_colour)
        if not all(isinstance(value, bool) for value in switches):
            raise TrainingError("augment, per_image_colour, lab_colour and balance_colour must be true or false.")
        try:
            colour_normalisation.from_switches(self.per_image_colour, self.lab_colour, self.balance_colour)
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
        if self.learning_rate is not None and (
            isinstance(self.learning_rate, bool)
            or not isinstance(self.learning_rate, (int, float))
            or not 0 < self.learning_rate < 1
        ):
            raise TrainingError(f"--learning-rate must be a number between 0 and 1, not {self.learning_rate!r}.")
        if (
            isinstance(self.grayscale_augment, bool)
            or not isinstance(self.grayscale_augment, (int, float))
            or not 0 <= self.grayscale_augment <= 1
        ):
            raise TrainingError(
                f"--grayscale-augment must be a probability between 0 and 1, not {self.grayscale_augment!r}."
            )
        if (
            isinstance(self.stain_augment, bool)
            or not isinstance(self.stain_augment, (int, float))
            or not 0 <= self.stain_augment < 1
        ):
            raise TrainingError(
                f"--stain-augment must be a number from 0 up to (not including) 1, not {self.stain_augment!r}."
            )
        site = self.site_augment or []
        if not isinstance(site, (list, tuple)) or not all(isinstance(name, str) for name in site):
            raise TrainingError(f"--site-augment takes names, not {self.site_augment!r}.")
        unknown = [name for name in site if name not in SITE_AUGMENTATIONS]
        if unknown:
            raise TrainingError(
                f"Unknown site augmentation(s): {', '.join(unknown)}. Choose from {', '.join(SITE_AUGMENTATIONS)}."
            )
        if self.max_per_class is not None and (not isinstance(self.max_per_class, int) or self.max_per_class < 3):
            raise TrainingError(
                f"--max-per-class must be an integer >= 3 (train/val/test), not {self.max_per_class!r}."
            )
        if self.split_mode not in SPLIT_MODES:
            raise TrainingError(f"--split must be one of {', '.join(SPLIT_MODES)}, not {self.split_mode!r}.")
        if self.promote not in (None, "", *PROMOTE_CHOICES):
            raise TrainingError(f"--promote accepts only 'best', not {self.promote!r}.")
        if not str(self.data_dir or "").strip():
            raise TrainingError("--data is required: the labelled image folder (<root>/<Class>/*.jpg).")
        options = replace(
            self,
            architectures=archs,
            site_augment=sorted(set(site)),
            promote=self.promote or None,
            data_dir=Path(self.data_dir).expanduser(),
            weights_dir=Path(self.weights_dir).expanduser() if self.weights_dir else None,
            output_dir=Path(self.output_dir).expanduser() if self.output_dir else None,
        )
        if check_paths:
            check_data_dir(options.data_dir)
            if options.weights_dir is not None and not options.weights_dir.is_dir():
                raise TrainingError(f"Weights folder not found: {options.weights_dir}")
            if options.output_dir is not None and options.output_dir.exists() and not options.output_dir.is_dir():
                raise TrainingError(f"--output {options.output_dir} exists and is not a folder.")
        return options

    # ----------------------------------------------------------------------------------------------
    # Stored form (TrainingRun.options)

    def to_json(self):
        """Every field, JSON-able (paths as strings, unset ones as None)."""
        data = asdict(self)
        for name in ("data_dir", "weights_dir", "output_dir"):
            data[name] = str(data[name]) if data[name] not in (None, "") else None
        data["promote"] = data["promote"] or None
        return data

    @classmethod
    def from_json(cls, data):
        """The options stored by ``to_json`` (missing keys take their defaults); not yet validated."""
        if not isinstance(data, dict):
            raise TrainingError(f"Training options must be a JSON object, not {type(data).__name__}.")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise TrainingError(f"Unknown training option(s): {', '.join(unknown)}.")
        return cls(**data)

    # ----------------------------------------------------------------------------------------------
    # What the pipeline receives

    def run_training_kwargs(self):
        """The recipe as keyword arguments of ml.pipeline.run_training (per architecture)."""
        return dict(
            epochs=self.epochs,
            image_size=self.image_size,
            split_mode=self.split_mode,
            seed=self.seed,
            batch_size=self.batch_size,
            augment=self.augment,
            max_per_class=self.max_per_class,
            normalisation=self.normalisation,
            learning_rate=self.learning_rate,
            augment_grayscale=self.grayscale_augment,
            augment_stain=self.stain_augment,
            augment_site=tuple(self.site_augment or ()),
        )

    def arguments(self):
        """The recipe as flags that both `manage.py retrain` and `python -m ml.pipeline` accept
        (everything but the data, output, weights and promotion)."""
        args = [
            "--arch",
            *self.architectures,
            "--epochs",
            str(self.epochs),
            "--image-size",
            str(self.image_size),
            "--split",
            self.split_mode,
            "--seed",
            str(self.seed),
            "--batch-size",
            str(self.batch_size),
        ]
        if not self.augment:
            args.append("--no-augment")
        if self.per_image_colour:
            args.append("--per-image-colour")
        if self.lab_colour:
            args.append("--lab-colour")
        if self.balance_colour:
            args.append("--balance-colour")
        if self.grayscale_augment:
            args += ["--grayscale-augment", repr(float(self.grayscale_augment))]
        if self.stain_augment:
            args += ["--stain-augment", repr(float(self.stain_augment))]
        if self.site_augment:
            args += ["--site-augment", *self.site_augment]
        if self.learning_rate is not None:
            args += ["--learning-rate", repr(float(self.learning_rate))]
        if self.max_per_class is not None:
            args += ["--max-per-class", str(self.max_per_class)]
        return args

    # ----------------------------------------------------------------------------------------------
    # A trained model's recipe

    @classmethod
    def from_metadata(cls, metadata, *, data_dir=None, output_dir=None):
        """The options that reproduce the run recorded in ``metadata`` (a run's metadata.json).

        ``data_dir``: where the images are here (default: the folder the run recorded). Raises
        TrainingError when the run used a setting these options cannot express (e.g. another
        patience or split fractions): such a run cannot be repeated from `retrain` or the admin.
        """
        from ml.splits import DEFAULT_BLOCK_SIZE, DEFAULT_FRACTIONS
        from ml.train import TrainConfig, with_config_defaults

        config = with_config_defaults(metadata.get("train_config") or {})
        split = metadata.get("split") or {}
        if not config.get("architecture"):
            raise TrainingError("This metadata records no training configuration (train_config).")
        fixed = {
            name: TrainConfig.__dataclass_fields__[name].default
            for name in (
                "patience",
                "augment_strength",
                "augment_color",
                "class_weighting",
                "lr_schedule",
                "min_learning_rate",
                "num_classes",
            )
        }
        fixed_split = {
            "seed": config.get("seed"),
            "fractions": list(DEFAULT_FRACTIONS),
            "block_size": DEFAULT_BLOCK_SIZE if split.get("mode") == "grouped" else None,
        }
        differs = [f"{name}={config.get(name)!r}" for name, value in fixed.items() if config.get(name) != value]
        differs += [
            f"split {name}={split.get(name)!r}" for name, value in fixed_split.items() if split.get(name) != value
        ]
        normalisation = config.get("normalisation")
        if normalisation not in colour_normalisation.SWITCHES:
            differs.append(f"normalisation={normalisation!r}")
        if differs:
            raise TrainingError(f"The run used settings retraining cannot set: {', '.join(differs)}.")
        return cls(
            data_dir=data_dir or (metadata.get("dataset") or {}).get("root"),
            architectures=[config["architecture"]],
            epochs=config["epochs"],
            image_size=config["image_size"],
            split_mode=split.get("mode", "grouped"),
            seed=config["seed"],
            batch_size=config["batch_size"],
            augment=config["augment"],
            **colour_normalisation.SWITCHES[normalisation],
            grayscale_augment=config["augment_grayscale"],
            stain_augment=config["augment_stain"],
            site_augment=sorted(config.get("augment_site") or []),
            learning_rate=config.get("learning_rate"),
            max_per_class=split.get("max_per_class"),
            output_dir=output_dir,
        )


def option_fields():
    """RetrainOptions' fields with their defaults, in order (for building forms and parsers)."""
    return [(f, f.default_factory() if f.default is MISSING else f.default) for f in fields(RetrainOptions)]


def check_data_dir(data_dir):
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise TrainingError(f"Data folder not found: {path}")
    if not path.is_dir():
        raise TrainingError(f"Data path is not a folder: {path}")
    if not any(p for p in path.iterdir() if not p.name.startswith(".")):
        raise TrainingError(
            f"Data folder {path} is empty: expected one sub-folder of images per class (Benign, Early, Pre, Pro)."
        )
    return path
