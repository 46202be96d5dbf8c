"""Fitting a model from in-memory uint8 arrays, resumable after an interruption.

Files written in ``output_dir`` (all resumable state lives there):

    backup/                       keras.callbacks.BackupAndRestore: weights + optimizer + epoch,
                                  deleted by Keras when fit() finishes normally
    checkpoints/best.weights.h5   weights of the epoch with the best val_accuracy so far
    history.json                  one entry per finished epoch (metrics, learning rate, seconds)
    train_config.json             the TrainConfig used

Calling ``train_model`` again with the same config and output_dir after a crash continues from the
last finished epoch. The returned model always carries the best-val_accuracy weights (restored
from the checkpoint file, which, unlike EarlyStopping's in-memory copy, survives interruption).
"""

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from .architectures import build_model, default_learning_rate
from .artifacts import read_json, write_json_atomically
from .classes import CLASS_NAMES

BACKUP_DIR = "backup"
BEST_WEIGHTS = "checkpoints/best.weights.h5"
HISTORY_FILE = "history.json"
CONFIG_FILE = "train_config.json"
LR_SCHEDULES = ("cosine", "plateau", "constant")


@dataclass
class TrainConfig:
    architecture: str = "convnet"
    image_size: int = 224
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = None  # Adam's initial rate; None: architectures.default_learning_rate
    seed: int = 42
    patience: int = 10  # early stopping on val_accuracy; 0 disables it
    augment: bool = True
    augment_strength: float = 1.0
    augment_color: bool = True
    augment_grayscale: float = 0.0  # probability of a gray training image (augmentation.build_augmentation)
    augment_stain: float = 0.0  # sigma of the stain-amount jitter (augmentation.build_augmentation)
    # names of ml.site_augmentation.SITE_AUGMENTATIONS (white balance, chroma, defocus, scale, noise, JPEG)
    augment_site: tuple = ()
    # None: the architecture's own input scaling; "per_image": PerImageColourStandardization.
    normalisation: str = None
    weights_path: str = None  # local ImageNet "notop" weights for mobilenetv2/resnet50/vgg19
    class_weighting: bool = True  # weight the loss by inverse class frequency
    # "cosine" (per-epoch, stateless: exact after resume), "plateau" (ReduceLROnPlateau on
    # val_loss; its counter restarts after a resume) or "constant".
    lr_schedule: str = "cosine"
    min_learning_rate: float = 1e-6
    jit_compile: object = "auto"  # passed to Model.compile
    # Wall-clock budget for fit(): no epoch is started that would likely end past it (a batch of
    # runs on a lent GPU machine must end in its slot with every model evaluated). None: no limit.
    time_limit_seconds: float = None
    num_classes: int = len(CLASS_NAMES)
    output_dir: str = None  # default for train_model's output_dir

    def __post_init__(self):
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.learning_rate is None:
            self.learning_rate = default_learning_rate(self.architecture)
        self.augment_site = tuple(sorted(set(self.augment_site or ())))

    def to_dict(self):
        data = asdict(self)
        data["weights_path"] = str(self.weights_path) if self.weights_path else None
        data["output_dir"] = str(self.output_dir) if self.output_dir else None
        data["augment_site"] = list(self.augment_site)
        return data


# Settings added after runs were saved: a saved config without one was trained as its default.
_ADDED_SETTINGS = ("augment_grayscale", "augment_stain", "augment_site")


def _comparable(value):
    """A setting as saved in JSON (lists) and as configured (tuples) compare equal."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def with_config_defaults(saved):
    """A saved train_config dict with the later-added settings filled in as their defaults."""
    defaults = {key: TrainConfig.__dataclass_fields__[key].default for key in _ADDED_SETTINGS}
    defaults = {key: list(value) if isinstance(value, tuple) else value for key, value in defaults.items()}
    return {**defaults, **saved}


@dataclass
class TrainResult:
    model: object  # keras.Model with the best-val_accuracy weights
    history: dict  # metric name -> list per epoch (all epochs, including those before a resume)
    best_epoch: int  # 0-based index of the epoch whose weights the model carries
    elapsed_seconds: float  # wall time of this call
    training_seconds: float = 0.0  # sum of epoch times over all runs (survives resumes)
    epochs_run: int = 0  # epochs finished in total
    resumed_from_epoch: int = 0  # 0 for a fresh start
    stopped_early: bool = False
    stopped_by_time_limit: bool = False
    extra: dict = field(default_factory=dict)


def class_weights(y, num_classes):
    """Inverse-frequency weights n / (K * n_c), so each class contributes equally to the loss."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)
    present = counts > 0
    weights = {}
    for c in range(num_classes):
        if present[c]:
            weights[c] = float(len(y) / (present.sum() * counts[c]))
    return weights


def cosine_learning_rate(epoch, epochs, base, minimum):
    """Cosine decay from ``base`` (epoch 0) towards ``minimum`` (last epoch)."""
    if epochs <= 1:
        return float(base)
    progress = min(epoch, epochs - 1) / (epochs - 1)
    return float(minimum + 0.5 * (base - minimum) * (1 + math.cos(math.pi * progress)))


def _to_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class _EpochLog(keras.callbacks.Callback):
    """Writes history.json after every epoch (atomically), merging epochs from earlier runs."""

    def __init__(self, path, previous_entries, architecture):
        super().__init__()
        self.path = Path(path)
        self.entries = list(previous_entries)
        self.architecture = architecture
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        entry = {"epoch": int(epoch)}
        for key, value in (logs or {}).items():
            number = _to_float(value)
            if number is not None:
                entry[key] = number
        entry["learning_rate"] = _to_float(self.model.optimizer.learning_rate)
        entry["seconds"] = time.perf_counter() - self._started
        self.entries = [e for e in self.entries if e["epoch"] < epoch] + [entry]
        write_json_atomically(self.path, {"architecture": self.architecture, "epochs": self.entries})


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose best value and patience counter continue from earlier epochs."""

    def __init__(self, previous_values, **kwargs):
        super().__init__(**kwargs)
        self._previous = [v for v in previous_values if v is not None]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._previous:
            best_index = int(np.argmax(self._previous))
            self.best = self._previous[best_index]
            self.best_epoch = best_index
            self.wait = len(self._previous) - 1 - best_index


class _TimeLimit(keras.callbacks.Callback):
    """Stops fit() after the epoch when one more epoch like the last would end past the limit."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = float(seconds)
        self.stopped = False

    def on_train_begin(self, logs=None):
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        last_epoch = epoch + 1 >= self.params.get("epochs", epoch + 1)
        if not last_epoch and now - self._started + (now - self._epoch_started) > self.seconds:
            self.stopped = True
            self.model.stop_training = True


def _history_as_lists(entries):
    keys = []
    for entry in entries:
        keys.extend(k for k in entry if k not in keys and k != "epoch")
    return {key: [entry.get(key) for entry in entries] for key in keys}


def _backup_epoch(output_dir):
    metadata = output_dir / BACKUP_DIR / "training_metadata.json"
    if not metadata.exists():
        return 0
    return int(read_json(metadata).get("epoch", 0))


def _check_arrays(name, arrays, image_size):
    if arrays is None:
        raise ValueError(f"{name} arrays are required")
    x, y = arrays
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"{name}: need a non-empty x and a y of the same length, got {len(x)} and {len(y)}")
    if tuple(x.shape[1:]) != (image_size, image_size, 3):
        raise ValueError(f"{name}: images must be {(image_size, image_size, 3)}, got {tuple(x.shape[1:])}")
    return np.asarray(x), np.asarray(y, dtype=np.int64)


def train_model(config, train_arrays, val_arrays, output_dir=None, progress=True, callbacks=None):
    """Build ``config.architecture`` and fit it on (x uint8, y int) arrays; returns a TrainResult.

    ``progress``: True -> Keras progress bar per epoch (verbose=1), False -> silent, or an int
    verbose level (2 = one line per epoch, better in log files). ``callbacks``: extra Keras
    callbacks, run after ours. Re-running with the same config and output_dir resumes.
    """
    if not (output_dir or config.output_dir):
        raise ValueError("output_dir is required (argument or config.output_dir)")
    output_dir = Path(output_dir or config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    x_train, y_train = _check_arrays("train", train_arrays, config.image_size)
    x_val, y_val = _check_arrays("val", val_arrays, config.image_size)
    started = time.perf_counter()

    resume_epoch = _backup_epoch(output_dir)
    config_path = output_dir / CONFIG_FILE
    if resume_epoch and config_path.exists():
        saved = with_config_defaults(read_json(config_path))
        for key in (
            "architecture",
            "image_size",
            "num_classes",
            "augment",
            "seed",
            "normalisation",
            "augment_grayscale",
            "augment_stain",
            "augment_site",
        ):
            if _comparable(saved.get(key)) != _comparable(getattr(config, key)):
                raise ValueError(
                    f"{output_dir} holds an interrupted run with {key}={saved.get(key)!r}, not "
                    f"{getattr(config, key)!r}: use a new output_dir or the same settings to resume"
                )
    history_path = output_dir / HISTORY_FILE
    best_path = output_dir / BEST_WEIGHTS
    previous = []
    if resume_epoch:
        if history_path.exists():
            previous = [e for e in read_json(history_path).get("epochs", []) if e["epoch"] < resume_epoch]
    else:
        # Fresh start: stale files from an older, finished run must not leak into this one.
        for stale in (history_path, best_path):
            if stale.exists():
                stale.unlink()
    write_json_atomically(config_path, config.to_dict())

    keras.utils.set_random_seed(config.seed)
    model = build_model(
        config.architecture,
        image_size=config.image_size,
        num_classes=config.num_classes,
        augment=config.augment,
        weights_path=config.weights_path,
        seed=config.seed,
        augment_strength=config.augment_strength,
        augment_color=config.augment_color,
        augment_grayscale=config.augment_grayscale,
        augment_stain=config.augment_stain,
        augment_site=config.augment_site,
        normalisation=config.normalisation,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )

    previous_val_acc = [e.get("val_accuracy") for e in previous]
    best_so_far = max((v for v in previous_val_acc if v is not None), default=None)
    best_path.parent.mkdir(parents=True, exist_ok=True)
    epoch_log = _EpochLog(history_path, previous, config.architecture)
    ours = [
        # Order matters: the checkpoint and the log are written before the backup records the
        # epoch as finished, so a crash in between makes the epoch run again rather than leave
        # it out of the history. All three run before any callback that may stop training.
        keras.callbacks.ModelCheckpoint(
            str(best_path),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=best_so_far,
        ),
        epoch_log,
        keras.callbacks.BackupAndRestore(backup_dir=str(output_dir / BACKUP_DIR)),
    ]
    if config.patience and config.patience > 0:
        ours.append(
            _ResumableEarlyStopping(
                previous_val_acc,
                monitor="val_accuracy",
                mode="max",
                patience=config.patience,
                restore_best_weights=False,  # the checkpoint file is reloaded below instead
            )
        )
    if config.lr_schedule == "cosine":
        ours.append(
            keras.callbacks.LearningRateScheduler(
                lambda epoch, lr: cosine_learning_rate(
                    epoch, config.epochs, config.learning_rate, config.min_learning_rate
                )
            )
        )
    elif config.lr_schedule == "plateau":
        ours.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(2, config.patience // 3), min_lr=config.min_learning_rate
            )
        )

    time_limit = _TimeLimit(config.time_limit_seconds) if config.time_limit_seconds else None
    if time_limit:
        ours.append(time_limit)

    verbose = (1 if progress else 0) if isinstance(progress, bool) else int(progress)
    fit_history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        class_weight=class_weights(y_train, config.num_classes) if config.class_weighting else None,
        callbacks=ours + list(callbacks or []),
        verbose=verbose,
    )

    entries = epoch_log.entries
    history = _history_as_lists(entries)
    val_acc = [-1.0 if v is None else v for v in history.get("val_accuracy", [])]
    # First epoch with the highest val_accuracy: the one ModelCheckpoint (strictly greater) kept.
    best_epoch = entries[int(np.argmax(val_acc))]["epoch"] if val_acc else entries[-1]["epoch"]
    if best_path.exists():
        model.load_weights(str(best_path))
    stopped_early = any(isinstance(cb, keras.callbacks.EarlyStopping) and cb.stopped_epoch > 0 for cb in ours)
    stopped_by_time_limit = bool(time_limit and time_limit.stopped)
    training_seconds = float(sum(e.get("seconds", 0.0) for e in entries))
    write_json_atomically(
        history_path,
        {
            "architecture": config.architecture,
            "epochs": entries,
            "best_epoch": best_epoch,
            "stopped_early": stopped_early,
            "stopped_by_time_limit": stopped_by_time_limit,
            "completed": True,
        },
    )
    return TrainResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        elapsed_seconds=time.perf_counter() - started,
        training_seconds=training_seconds,
        epochs_run=len(entries),
        resumed_from_epoch=resume_epoch,
        stopped_early=stopped_early,
        stopped_by_time_limit=stopped_by_time_limit,
        extra={"keras_history_epochs": len(fit_history.epoch)},
    )
