"""Model files in shared object storage (S3) for deployments whose workers share no folder.

With ``TELEDIAG_S3_BUCKET`` set, a registered model's folder (model.keras, metadata.json, plots) is
also uploaded to the bucket under ``models/<version name>/`` (the ``models`` storage alias), and
a model report's folder under ``reports/``. A
worker that does not have a version's file in its own ``MODEL_DIR`` downloads it from there, checks
its sha256 against the one recorded in the database and only then moves it into place (atomic
rename), so a truncated or altered download never serves. The shipped default model is part of
the image and is never uploaded.
"""

import hmac
import logging
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.storage import storages

from ml import artifacts

logger = logging.getLogger(__name__)
MODELS_ALIAS = "models"


class ModelStoreError(Exception):
    pass


class NotInStore(ModelStoreError, FileNotFoundError):
    pass


class DownloadMismatch(ModelStoreError):
    """The downloaded bytes are not the ones recorded for the version."""


def enabled():
    return MODELS_ALIAS in settings.STORAGES


def storage():
    return storages[MODELS_ALIAS]


def _local_path(version):
    """Where this node keeps the version's file (as training.registry.model_path)."""
    path = Path(version.file_path)
    return path if path.is_absolute() else Path(settings.MODEL_DIR) / path


def _is_remote_candidate(version):
    """Versions registered in MODEL_DIR (relative paths); the shipped model is recorded absolute."""
    return enabled() and not Path(version.file_path).is_absolute()


def _key(relative):
    return Path(relative).as_posix()


def publish_folder(name):
    """Upload every file of MODEL_DIR/<name>/ to the models storage; returns the keys written."""
    root = Path(settings.MODEL_DIR)
    folder = root / name
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = _key(path.relative_to(root))
        if not storage().exists(key):  # a version's folder never changes once registered
            with open(path, "rb") as handle:
                storage().save(key, handle)
        keys.append(key)
    logger.info("Model version %s uploaded to the model store (%d files).", name, len(keys))
    return keys


def publish_report(folder):
    """With S3, upload a model report's folder (manage.py model_report) to ``reports/<folder>/`` in
    the bucket, beside the model files; returns the keys written (none without S3)."""
    if not enabled():
        return []
    from django.core.files.storage import default_storage

    folder = Path(folder)
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(path, "rb") as handle:
            keys.append(default_storage.save(f"reports/{folder.name}/{path.relative_to(folder).as_posix()}", handle))
    return keys


def publish(version):
    if _is_remote_candidate(version):
        return publish_folder(Path(version.file_path).parts[0])
    return []


def is_available(version):
    """The version's file is in this node's MODEL_DIR, or in the model store to download."""
    if _local_path(version).is_file():
        return True
    return _is_remote_candidate(version) and storage().exists(_key(version.file_path))


def fetch(version):
    """Make sure MODEL_DIR holds the version's file with its recorded sha256; download it if needed.

    Returns the local path. Raises ModelStoreError when the store lacks it or its bytes differ.
    """
    path = _local_path(version)
    if path.is_file() or not _is_remote_candidate(version):
        return path
    key = _key(version.file_path)
    if not storage().exists(key):
        raise NotInStore(f"Model file of version {version.name!r} is neither in {path} nor in the model store.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".download", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out, storage().open(key, "rb") as remote:
            for chunk in iter(lambda: remote.read(1 << 20), b""):
                out.write(chunk)
        actual = artifacts.sha256_file(tmp)
        if not hmac.compare_digest(actual, (version.sha256 or "").lower()):
            raise DownloadMismatch(
                f"Downloaded model file of version {version.name!r} has sha256 {actual}, but {version.sha256} was "
                "recorded: refusing it."
            )
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    logger.info(
        "Model version %s downloaded from the model store and verified (sha256 %s).", version.name, version.sha256[:12]
    )
    return path
