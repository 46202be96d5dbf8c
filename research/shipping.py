"""Shipping a registered model version as the repository's default model (settings.SHIPPED_MODEL_DIR).

``ship_version`` writes ``SHIPPED_MODEL_DIR/<folder>/``: the model without optimizer state (what
serving needs; a third of the size), its metadata.json (split, metrics, smear check, the version's
name, and the sha256 of the file it came from), and its plots. ``default_model.ensure_default_model``
then registers that folder on a fresh install. With ``replace`` the other shipped folders are
removed, so the repository ships exactly one default model.
"""

import shutil
import tempfile
from pathlib import Path

from django.conf import settings

from ml import artifacts
from training import registry

MAX_SHIPPED_BYTES = 15 * 1024 * 1024  # what the repository carries per default model


class ShippingError(Exception):
    pass


def _metadata_of(version):
    path = registry.model_path(version).parent / registry.METADATA_FILE
    if not path.is_file():
        raise ShippingError(f"Model version {version.name} has no metadata.json beside its file ({path}).")
    return artifacts.read_json(path)


def ship_version(version, folder=None, *, name=None, replace=False, max_bytes=MAX_SHIPPED_BYTES):
    """Write ``version`` into SHIPPED_MODEL_DIR/``folder`` (default: the version's name); returns the
    folder. ``name``: the version name fresh installs register it under (default: the version's).
    Refuses a file over ``max_bytes``, a model without a recorded split, or an altered file."""
    if not (version.record.split or {}).get("splits"):
        raise ShippingError(
            f"Model version {version.name} has no recorded split: a shipped model must say which "
            "images it was trained and tested on."
        )
    try:
        model = registry.load_model(version)  # checks the sha256
    except registry.RegistryError as exc:
        raise ShippingError(str(exc)) from exc
    metadata = _metadata_of(version)
    source_dir = registry.model_path(version).parent
    root = Path(settings.SHIPPED_MODEL_DIR)
    folder = folder or version.name
    if Path(folder).name != folder or folder in ("", ".", ".."):
        raise ShippingError(f"--folder must be a plain folder name, not {folder!r}.")
    if (root / folder).resolve() == source_dir.resolve():
        raise ShippingError(f"{version.name} is already shipped in {source_dir}.")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".shipping-{folder}-", dir=root))
    try:
        sha256 = artifacts.save_model_atomically(model, staging / registry.MODEL_FILE)
        size = (staging / registry.MODEL_FILE).stat().st_size
        if size > max_bytes:
            raise ShippingError(
                f"{version.name} is {size / 1e6:.1f} MB without optimizer state; the repository ships "
                f"at most {max_bytes / 1e6:.1f} MB per model."
            )
        plots = {}
        for key, rel in (metadata.get("plots") or {}).items():
            plot = source_dir / rel
            if plot.is_file():
                (staging / registry.PLOTS_DIR).mkdir(exist_ok=True)
                shutil.copyfile(plot, staging / registry.PLOTS_DIR / plot.name)
                plots[key] = f"{registry.PLOTS_DIR}/{plot.name}"
        metadata.update(
            version_name=name or version.name,
            model_file=registry.MODEL_FILE,
            sha256=sha256,
            plots=plots,
            smear_check=version.smear_check or metadata.get("smear_check"),
            shipped_from={
                "version": version.name,
                "run_model_sha256": version.sha256,
                "note": "same weights, saved without optimizer state",
            },
        )
        artifacts.write_metadata(staging / registry.METADATA_FILE, metadata)
        staging.chmod(0o755)
        final = root / folder
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if replace:
        for other in root.iterdir():
            if other.is_dir() and other != final and (other / registry.METADATA_FILE).is_file():
                shutil.rmtree(other)
    return final
