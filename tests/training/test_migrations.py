"""Migrations 0004 (TrainingRun.options) and 0005 (ModelRecord) keep every stored value, both ways."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("training", "0003_modelversion_smear_check")]
AFTER = [("training", "0005_modelrecord")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_run_columns_and_version_record_move_and_come_back():
    try:
        apps = migrate(BEFORE)
        version = apps.get_model("training", "ModelVersion").objects.create(
            name="old-1",
            architecture="convnet",
            file_path="old-1/model.keras",
            sha256="0" * 64,
            preprocessing={"function": "prepare_image"},
            metrics={"val": {"accuracy": 0.9}},
            plots={"training_curves": "old-1/plots/training_curves.png"},
            split={"mode": "grouped", "seed": 1},
            versions={"keras": "3"},
            data_fingerprint="f" * 64,
            notes="kept",
        )
        run = apps.get_model("training", "TrainingRun").objects.create(
            data_dir="/data",
            architectures=["convnet", "vgg19"],
            epochs=30,
            image_size=128,
            split_mode="random",
            seed=3,
            batch_size=16,
            augment=False,
            promote="best",
            weights_dir="",
            max_per_class=None,
            output_dir="/runs/1",
        )

        apps = migrate(AFTER)
        record = apps.get_model("training", "ModelRecord").objects.get(version_id=version.pk)
        assert record.metrics == {"val": {"accuracy": 0.9}} and record.split == {"mode": "grouped", "seed": 1}
        assert record.preprocessing == {"function": "prepare_image"} and record.versions == {"keras": "3"}
        assert record.plots == {"training_curves": "old-1/plots/training_curves.png"}
        moved = apps.get_model("training", "ModelVersion").objects.get(pk=version.pk)
        assert moved.notes == "kept" and moved.data_fingerprint == "f" * 64
        options = apps.get_model("training", "TrainingRun").objects.get(pk=run.pk).options
        assert options == {
            "data_dir": "/data",
            "architectures": ["convnet", "vgg19"],
            "epochs": 30,
            "image_size": 128,
            "split_mode": "random",
            "seed": 3,
            "batch_size": 16,
            "augment": False,
            "promote": "best",
            "weights_dir": None,
            "max_per_class": None,
            "output_dir": "/runs/1",
            "per_image_colour": False,
            "grayscale_augment": 0.0,
            "stain_augment": 0.0,
            "learning_rate": None,
        }
        from training.options import RetrainOptions

        RetrainOptions.from_json(options).validate(check_paths=False)  # what the worker will read

        apps = migrate(BEFORE)
        back = apps.get_model("training", "ModelVersion").objects.get(pk=version.pk)
        assert back.metrics == {"val": {"accuracy": 0.9}} and back.split == {"mode": "grouped", "seed": 1}
        run_back = apps.get_model("training", "TrainingRun").objects.get(pk=run.pk)
        assert (run_back.epochs, run_back.image_size, run_back.promote, run_back.output_dir) == (
            30,
            128,
            "best",
            "/runs/1",
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
