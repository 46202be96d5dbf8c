"""Writing model files and metadata safely, and loading a model only if its bytes are the expected ones.

Writes go to a temporary file in the destination folder, are fsynced and then renamed over the
target (os.replace is atomic on one file system), so a reader never sees a half-written model and
a crash leaves the previous file intact.
"""

import hashlib
import hmac
import json
import os
import shutil
import tempfile
from pathlib import Path


class ModelIntegrityError(RuntimeError):
    """The model file's sha256 is not the one recorded for it (changed, truncated or replaced)."""


def sha256_file(path, chunk_size=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. not permitted on some platforms; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_atomically(tmp_path, path):
    with open(tmp_path, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp_path, path)
    _fsync_directory(os.path.dirname(os.path.abspath(path)))


def serving_copy(model):
    """The same network without its optimizer state, which serving never needs.

    Adam keeps two slots per weight, so a trained model saved with its optimizer is three times
    the size (MobileNetV2: 27.6 MB instead of ~9 MB).
    """
    if getattr(model, "optimizer", None) is None:
        return model
    import keras

    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def save_model_atomically(model, path):
    """Save ``model`` (without optimizer state) as a .keras file at ``path`` atomically; returns
    the file's sha256."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Model path must end in .keras: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keras insists on the .keras suffix, so the temporary name ends with it too.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.keras", dir=path.parent)
    os.close(fd)
    try:
        serving_copy(model).save(tmp_name, overwrite=True)
        _replace_atomically(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return sha256_file(path)


def write_json_atomically(path, data):
    """Write ``data`` as indented JSON at ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False, default=_json_default)
            handle.write("\n")
        _replace_atomically(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def write_metadata(path, metadata):
    """Metadata JSON beside a model (e.g. model.keras -> metadata.json), written atomically."""
    write_json_atomically(path, metadata)


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _json_default(value):
    # numpy scalars/arrays and paths show up in metrics and configs.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Not JSON serialisable: {type(value).__name__}")


def load_model_verified(path, expected_sha256):
    """Load a .keras model only if its sha256 equals ``expected_sha256``; safe_mode=True.

    The bytes are hashed and loaded from one private copy, so the file cannot be swapped between
    the check and the load. Raises ModelIntegrityError on mismatch.
    """
    import keras

    from . import layers, site_augmentation  # noqa: F401 - register the "telediag>" custom layers before loading

    path = Path(path)
    if not expected_sha256:
        raise ModelIntegrityError(f"No expected sha256 given for {path}; refusing to load it unverified")
    tmp_dir = tempfile.mkdtemp(prefix="telediag-model-")
    try:
        private_copy = Path(tmp_dir) / "model.keras"
        shutil.copyfile(path, private_copy)
        actual = sha256_file(private_copy)
        if not hmac.compare_digest(actual, expected_sha256.lower()):
            raise ModelIntegrityError(
                f"Model file {path} has sha256 {actual}, expected {expected_sha256}: refusing to load it"
            )
        return keras.saving.load_model(private_copy, compile=False, safe_mode=True)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
