"""Fixtures of the inference tests: a small real Keras model, registered as a ModelVersion.

The model is a `convnet_bn` built with ml.architectures.build_model at 32 px (augmentation
included, as in real models; it is the identity at inference), with a head bias set so its outputs
are clearly non-uniform, saved once per session with ml.artifacts.
"""

import os
from pathlib import Path

import pytest

MODEL_IMAGE_SIZE = 32
HEAD_BIAS = (0.0, 0.4, 2.5, -0.5)  # favours "pre_b" without making every other class vanish


def build_test_model_file(directory, image_size=MODEL_IMAGE_SIZE, bias=HEAD_BIAS, seed=7):
    """Build, adjust and save a small model; returns (path, sha256)."""
    import numpy as np

    from ml import artifacts
    from ml.architectures import build_model
    from ml.classes import CLASS_NAMES

    model = build_model("convnet_bn", image_size=image_size, num_classes=len(CLASS_NAMES), augment=True, seed=seed)
    head = model.get_layer("predictions")
    kernel, _ = head.get_weights()
    head.set_weights([kernel, np.asarray(bias, dtype="float32")])
    path = Path(directory) / "model.keras"
    sha256 = artifacts.save_model_atomically(model, path)
    return path, sha256


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    return build_test_model_file(tmp_path_factory.mktemp("inference-model"))


def register_version(path, sha256, name="convnet-test", active=True, **fields):
    from ml.classes import CLASS_NAMES
    from training.models import ModelVersion

    fields.setdefault("input_size", MODEL_IMAGE_SIZE)
    fields.setdefault("architecture", "convnet_bn")
    version = ModelVersion.objects.create(
        name=name,
        file_path=str(path),
        sha256=sha256,
        class_names=list(CLASS_NAMES),
        **fields,
    )
    if active:
        version.activate()
    return version


@pytest.fixture
def model_version(db, model_file):
    path, sha256 = model_file
    return register_version(path, sha256)


@pytest.fixture
def fresh_model_cache():
    """An empty per-process model cache (tests otherwise share the loaded test model: same sha256)."""
    from inference import worker

    worker.clear_cache()
    yield
    worker.clear_cache()


@pytest.fixture(params=["one-statement", "orm"])
def statements(request, monkeypatch):
    """Both ways of claiming jobs and storing results: one statement each (PostgreSQL) and the ORM's
    statements (other databases), see inference.claims and inference.results."""
    from django.db import connection

    from inference import claims, results

    if request.param == "one-statement" and connection.vendor != "postgresql":
        pytest.skip("one-statement claims and results are PostgreSQL's")
    if request.param == "orm":
        monkeypatch.setattr(claims, "_one_statement", lambda: False)
        monkeypatch.setattr(results, "_one_statement", lambda: False)
    return request.param


class Published(list):
    """Task messages the code tried to publish: [(job id, or a case's job ids in one message, options)]."""

    fail_with = None

    def job_ids(self):
        return [job_id for message, _ in self for job_id in (message if isinstance(message, list) else [message])]


@pytest.fixture(autouse=True)
def published(request, monkeypatch):
    """Unit tests never talk to a broker: publishing is recorded instead (integration tests publish)."""
    from inference import publishing

    publishing.breaker.reset()  # a broker failure simulated by one test never holds up the next
    recorder = Published()
    if request.node.get_closest_marker("integration"):
        return recorder
    from inference.tasks import analyse_smear, analyse_smears

    def fake_apply_async(args=None, kwargs=None, **options):
        if recorder.fail_with is not None:
            raise recorder.fail_with
        recorder.append((args[0], options))

    monkeypatch.setattr(analyse_smear, "apply_async", fake_apply_async)
    monkeypatch.setattr(analyse_smears, "apply_async", fake_apply_async)
    return recorder


@pytest.fixture
def run_jobs(published):
    """Run the published messages' tasks in-process, as a worker would (called directly): each job's
    outcome, in the order of the messages."""
    from inference.tasks import analyse_smear, analyse_smears

    def run():
        outcomes = []
        while published:
            message, _ = published.pop(0)
            if isinstance(message, list):
                done = analyse_smears(message)
                outcomes.extend(done[job_id] for job_id in message)
            else:
                outcomes.append(analyse_smear(message))
        return outcomes

    return run


def env_flag(name):
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
