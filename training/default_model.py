"""The default model shipped with the repository (under settings.SHIPPED_MODEL_DIR).

A shipped model is a training output folder (model.keras + metadata.json, optionally plots/) placed
in SHIPPED_MODEL_DIR or one sub-folder of it. ``ensure_default_model`` registers it in place (the
ModelVersion records its absolute path) and, when no model is active yet, activates it, so a fresh
installation can classify before anyone retrains. Run it with `manage.py register_default_model`.
"""

from pathlib import Path

from django.conf import settings

from ml import artifacts
from training import registry
from training.models import ModelVersion


def shipped_models():
    """(metadata dict, model path) for each shipped model folder, in name order."""
    root = Path(settings.SHIPPED_MODEL_DIR)
    found = []
    for metadata_path in sorted([*root.glob("metadata.json"), *root.glob("*/metadata.json")]):
        metadata = artifacts.read_json(metadata_path)
        model_path = metadata_path.parent / metadata.get("model_file", registry.MODEL_FILE)
        if model_path.is_file():
            found.append((metadata, model_path))
    return found


def ensure_default_model(activate_if_none=True):
    """Register every shipped model not registered yet; returns the registered versions.

    A version whose shipped file moved (the repository was checked out elsewhere) has its absolute
    path updated. The first shipped model is activated when no model is active and
    ``activate_if_none``.
    """
    versions = []
    for metadata, model_path in shipped_models():
        result = {**metadata, "model_path": str(model_path), "output_dir": str(model_path.parent)}
        existing = ModelVersion.objects.filter(sha256=metadata.get("sha256", "")).first()
        if existing is not None:
            recorded = Path(existing.file_path)
            if recorded.is_absolute() and recorded != model_path.resolve() and not recorded.is_file():
                existing.file_path = str(model_path.resolve())
                existing.save(update_fields=["file_path"])
            versions.append(existing)
            continue
        name = metadata.get("version_name") or f"default-{metadata.get('architecture', 'model')}"
        versions.append(registry.register_model(result, name=name, notes="Default model shipped with the repository."))
    if versions and activate_if_none and registry.get_active_version() is None:
        registry.activate(versions[0], verify=True)
    return versions
