import csv
import io
import json
from dataclasses import replace

import pytest
from django.core.management import CommandError, call_command

from tests.training.conftest import BATCH, EPOCHS, SIZE, make_image
from training import registry, services
from training.models import ModelRecord, ModelVersion
from training.options import KNOWN_ARCHITECTURES, STUDY_ARCHITECTURES

pytestmark = pytest.mark.django_db

RETRAIN_ARGS = [
    "--epochs",
    str(EPOCHS),
    "--image-size",
    str(SIZE),
    "--split",
    "random",
    "--seed",
    "7",
    "--batch-size",
    str(BATCH),
    "--no-augment",
]


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, verbosity=0)
    return out.getvalue(), err.getvalue()


def test_retrain_end_to_end_registers_a_version_and_resumes(synthetic_data, tmp_path, settings):
    output = tmp_path / "run"
    out, _ = run("retrain", "--data", str(synthetic_data), "--arch", "convnet", "--output", str(output), *RETRAIN_ARGS)

    version = ModelVersion.objects.get()
    assert version.architecture == "convnet" and version.input_size == SIZE
    path = registry.model_path(version)
    assert path.is_file() and path.parent.parent == settings.MODEL_DIR
    registry.verify_file(version)
    assert version.record.metrics["test"]["accuracy"] == 1.0
    assert all((settings.MODEL_DIR / p).is_file() for p in version.record.plots.values())
    assert not version.is_active  # no --promote
    # Per-model metrics and the comparison table.
    assert "test split" in out and "macro-F1" in out and "confusion matrix" in out
    assert "Architecture" in out and "Accuracy" in out and "Val. acc." in out and version.name in out
    assert (output / "convnet" / "model.keras").is_file()

    # Same --output again: the finished architecture is reused, not retrained or registered twice.
    out, _ = run("retrain", "--data", str(synthetic_data), "--arch", "convnet", "--output", str(output), *RETRAIN_ARGS)
    assert "already trained" in out
    assert ModelVersion.objects.count() == 1


def test_retrain_per_image_colour_builds_a_model_without_the_average_colour(synthetic_data, tmp_path):
    from ml.architectures import normalisation_of

    output = tmp_path / "run"
    run("retrain", "--data", str(synthetic_data), "--arch", "convnet", "--output", str(output), *RETRAIN_ARGS)
    run(
        "retrain",
        "--data",
        str(synthetic_data),
        "--arch",
        "convnet",
        "--output",
        str(tmp_path / "pi"),
        "--per-image-colour",
        *RETRAIN_ARGS,
    )
    plain, per_image = ModelVersion.objects.order_by("pk")
    assert normalisation_of(registry.load_model(plain)) == "unit"
    assert normalisation_of(registry.load_model(per_image)) == "per_image"
    assert "PerImageColourStandardization" in per_image.record.preprocessing["in_model_normalisation"]
    options = services.RetrainOptions(
        data_dir=synthetic_data,
        architectures=["convnet"],
        epochs=EPOCHS,
        image_size=SIZE,
        split_mode="random",
        seed=7,
        batch_size=BATCH,
        augment=False,
        per_image_colour=True,
    )
    # A finished plain run is not taken for a per-image one when the same --output is reused.
    assert (
        services._completed_result(output / "convnet", options, "convnet", services.scan(synthetic_data).fingerprint())
        is None
    )


def test_retrain_grayscale_stain_and_site_augment_reach_the_model_and_are_part_of_the_run(synthetic_data, tmp_path):
    output = tmp_path / "run"
    augmented = [a for a in RETRAIN_ARGS if a != "--no-augment"]
    run(
        "retrain",
        "--data",
        str(synthetic_data),
        "--arch",
        "convnet",
        "--output",
        str(output),
        "--grayscale-augment",
        "0.25",
        "--stain-augment",
        "0.05",
        "--site-augment",
        "jpeg",
        "white_balance",
        *augmented,
    )
    metadata = json.loads((output / "convnet" / "metadata.json").read_text())
    assert metadata["train_config"]["augment_grayscale"] == 0.25
    assert metadata["train_config"]["augment_stain"] == 0.05
    assert metadata["train_config"]["augment_site"] == ["jpeg", "white_balance"]
    model = registry.load_model(ModelVersion.objects.get())
    assert model.get_layer("augmentation").get_layer("grayscale").factor == 0.25
    assert model.get_layer("augmentation").get_layer("stain").sigma == pytest.approx(0.05)
    assert model.get_layer("augmentation").get_layer("site_jpeg").max_quality == 90
    assert model.get_layer("augmentation").get_layer("site_white_balance").max_gain == pytest.approx(0.12)
    options = services.RetrainOptions(
        data_dir=synthetic_data,
        architectures=["convnet"],
        epochs=EPOCHS,
        image_size=SIZE,
        split_mode="random",
        seed=7,
        batch_size=BATCH,
    )
    fingerprint = services.scan(synthetic_data).fingerprint()
    # The same --output with the same options is this finished run; without either option, another run.
    same = replace(options, grayscale_augment=0.25, stain_augment=0.05, site_augment=["white_balance", "jpeg"])
    assert services._completed_result(output / "convnet", same, "convnet", fingerprint) is not None
    for other in (
        options,
        replace(same, stain_augment=0.0),
        replace(same, grayscale_augment=0.0),
        replace(same, site_augment=["jpeg"]),
    ):
        assert services._completed_result(output / "convnet", other, "convnet", fingerprint) is None


def test_retrain_learning_rate_reaches_training_and_is_part_of_the_run(synthetic_data, tmp_path):
    output = tmp_path / "run"
    run(
        "retrain",
        "--data",
        str(synthetic_data),
        "--arch",
        "convnet",
        "--output",
        str(output),
        "--learning-rate",
        "0.0003",
        *RETRAIN_ARGS,
    )
    metadata = json.loads((output / "convnet" / "metadata.json").read_text())
    assert metadata["train_config"]["learning_rate"] == pytest.approx(3e-4)
    history = json.loads((output / "convnet" / "history.json").read_text())
    assert history["epochs"][0]["learning_rate"] == pytest.approx(3e-4)  # the schedule starts there
    options = services.RetrainOptions(
        data_dir=synthetic_data,
        architectures=["convnet"],
        epochs=EPOCHS,
        image_size=SIZE,
        split_mode="random",
        seed=7,
        batch_size=BATCH,
        augment=False,
    )
    fingerprint = services.scan(synthetic_data).fingerprint()
    # The same folder with another learning rate is a different run, not a finished one to reuse.
    assert services._completed_result(output / "convnet", options, "convnet", fingerprint) is None
    assert (
        services._completed_result(output / "convnet", replace(options, learning_rate=3e-4), "convnet", fingerprint)
        is not None
    )


def test_retrain_promote_best_activates_exactly_one(synthetic_data, trained_output, trained_runs):
    previous = ModelVersion.objects.create(
        name="old", architecture="convnet", file_path="old/model.keras", sha256="0" * 64, is_active=True
    )
    out, _ = run(
        "retrain",
        "--data",
        str(synthetic_data),
        "--arch",
        "convnet",
        "convnet_bn",
        "--output",
        str(trained_output),
        "--promote",
        "best",
        *RETRAIN_ARGS,
    )

    assert out.count("already trained") == 2  # reused the session's trained folders
    trained = ModelVersion.objects.exclude(pk=previous.pk)
    assert sorted(trained.values_list("architecture", flat=True)) == ["convnet", "convnet_bn"]
    active = ModelVersion.objects.filter(is_active=True)
    assert active.count() == 1
    best = services.best_version(list(trained.order_by("pk")))
    assert active.get() == best
    assert f"Promoted {best.name}" in out


def test_best_version_uses_validation_accuracy_then_loss():
    def version(name, acc, loss, test_acc):
        version = ModelVersion(name=name)
        ModelRecord(version=version, metrics={"val": {"accuracy": acc, "loss": loss}, "test": {"accuracy": test_acc}})
        return version

    a, b, c = version("a", 0.9, 0.3, 0.99), version("b", 0.95, 0.5, 0.5), version("c", 0.95, 0.2, 0.4)
    assert services.best_version([a, b, c]).name == "c"  # test accuracy is never used to choose
    assert services.best_version([a, b]).name == "b"


def test_promote_command_switches_exclusively(convnet_result, trained_output):
    first = registry.register_model(convnet_result)
    second_result = {
        **convnet_result,
        "model_path": str(trained_output / "convnet_bn" / "model.keras"),
        "output_dir": str(trained_output / "convnet_bn"),
        "architecture": "convnet_bn",
        "sha256": None,
    }
    second = registry.register_model(second_result)

    out, _ = run("promote", first.name)
    assert f"{first.name} is now the active model" in out
    assert list(ModelVersion.objects.filter(is_active=True)) == [first]

    out, _ = run("promote", str(second.pk))
    assert f"(was {first.name})" in out
    assert list(ModelVersion.objects.filter(is_active=True)) == [second]

    with pytest.raises(CommandError, match="No model version named or numbered 'missing'"):
        run("promote", "missing")
    assert list(ModelVersion.objects.filter(is_active=True)) == [second]


def test_promote_refuses_a_tampered_model(convnet_result):
    version = registry.register_model(convnet_result)
    with open(registry.model_path(version), "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(CommandError, match=f"{version.name}.*sha256"):
        run("promote", version.name)
    assert not ModelVersion.objects.filter(is_active=True).exists()


def test_evaluate_json_on_a_trivially_separable_set(convnet_result, synthetic_eval_data):
    version = registry.register_model(convnet_result)
    registry.activate(version)

    out, _ = run("evaluate", "--data", str(synthetic_eval_data), "--format", "json")
    result = json.loads(out)  # nothing but JSON on stdout
    metrics = result["metrics"]
    assert result["model"]["name"] == version.name
    assert result["data"]["images"] == 20
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert metrics["confusion_matrix"] == [[5, 0, 0, 0], [0, 5, 0, 0], [0, 0, 5, 0], [0, 0, 0, 5]]
    assert set(metrics["per_class"]) == {"benign", "early_pre_b", "pre_b", "pro_b"}
    assert {"precision", "recall", "f1", "support"} <= set(metrics["per_class"]["pre_b"])
    assert 0 <= metrics["ece"] <= 1 and metrics["loss"] >= 0

    text, _ = run("evaluate", "--data", str(synthetic_eval_data), "--model", version.name)
    assert "accuracy 100.00%" in text and "ECE" in text and "confusion matrix" in text


def test_evaluate_refuses_a_tampered_model(convnet_result, synthetic_eval_data):
    version = registry.register_model(convnet_result)
    path = registry.model_path(version)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CommandError, match=f"Refusing model version '{version.name}'"):
        run("evaluate", "--data", str(synthetic_eval_data), "--model", version.name)


def test_evaluate_without_an_active_model(synthetic_eval_data):
    with pytest.raises(CommandError, match="No model version is active"):
        run("evaluate", "--data", str(synthetic_eval_data))


@pytest.fixture
def diagnose_folder(tmp_path):
    import numpy as np

    rng = np.random.default_rng(3)
    folder = tmp_path / "to-diagnose"
    make_image(folder / "red.png", (220, 40, 40), rng, size=50)
    make_image(folder / "nested" / "blue.jpg", (40, 40, 220), rng, size=20)
    make_image(folder / "nested" / "deeper" / "yellow.tif", (230, 220, 30), rng)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (folder / "notes.txt").write_text("not an image: ignored")
    return folder


def test_diagnose_csv(convnet_result, diagnose_folder, tmp_path):
    version = registry.register_model(convnet_result)
    registry.activate(version)
    # Flat colour fields are not blood smears: with the run's smear check, diagnose (like the
    # worker) gives them no subtype and says why in the flag column.
    out, _ = run("diagnose", str(diagnose_folder))
    checked = [row for row in csv.DictReader(io.StringIO(out)) if row["label"] == "not_a_smear"]
    assert checked and all(row["flag"].startswith("not a blood smear") for row in checked)
    ModelVersion.objects.filter(pk=version.pk).update(smear_check={})  # the classes below: no check
    rng_file = tmp_path / "green.bmp"
    import numpy as np

    make_image(rng_file, (40, 200, 40), np.random.default_rng(4))

    out, err = run("diagnose", str(diagnose_folder), str(rng_file), str(tmp_path / "absent.png"))
    rows = {row["path"].split("/")[-1]: row for row in csv.DictReader(io.StringIO(out))}
    assert list(csv.DictReader(io.StringIO(out)).fieldnames) == [
        "path",
        "label",
        "confidence",
        "p_benign",
        "p_early_pre_b",
        "p_pre_b",
        "p_pro_b",
        "ood_score",
        "flag",
        "error",
    ]
    assert set(rows) == {"red.png", "blue.jpg", "yellow.tif", "broken.png", "green.bmp", "absent.png"}
    assert rows["red.png"]["label"] == "benign"
    assert rows["blue.jpg"]["label"] == "pre_b"
    assert rows["yellow.tif"]["label"] == "pro_b"
    assert rows["green.bmp"]["label"] == "early_pre_b"
    total = sum(float(rows["red.png"][f"p_{c}"]) for c in ("benign", "early_pre_b", "pre_b", "pro_b"))
    assert total == pytest.approx(1.0, abs=1e-4)
    assert rows["broken.png"]["label"] == "" and "Cannot read image" in rows["broken.png"]["error"]
    assert rows["absent.png"]["error"] == "not found"
    assert "2 could not be read" in err


def test_diagnose_json_uses_the_serving_preprocessing(convnet_result, diagnose_folder):
    import numpy as np

    from ml.images import prepare_image

    version = registry.register_model(convnet_result)
    ModelVersion.objects.filter(pk=version.pk).update(smear_check={})  # flat colours: no smear check
    out, _ = run(
        "diagnose",
        str(diagnose_folder / "red.png"),
        str(diagnose_folder / "broken.png"),
        "--model",
        version.name,
        "--format",
        "json",
    )
    payload = json.loads(out)
    assert payload["model"]["name"] == version.name and payload["model"]["input_size"] == SIZE
    good, bad = payload["results"]
    assert good["label"] == "benign" and bad["label"] is None and bad["error"]

    model = registry.load_model(version)
    expected = model.predict(prepare_image(diagnose_folder / "red.png", SIZE)[None].astype("float32"), verbose=0)[0]
    assert [good["probabilities"][c] for c in version.class_names] == pytest.approx(expected.tolist(), abs=1e-6)
    assert good["confidence"] == pytest.approx(float(np.max(expected)), abs=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "{missing}", "--arch", "convnet"], "Data folder not found"),
        (["--data", "{empty}", "--arch", "convnet"], "is empty"),
        (["--data", "{data}", "--arch", "convnet", "alexnet"], "Unknown architecture(s): alexnet"),
        (["--data", "{data}", "--arch", "vgg19", "--image-size", "16"], "too small for vgg19"),
        (["--data", "{data}", "--arch", "convnet", "--epochs", "0"], "--epochs must be an integer >= 1"),
        (["--data", "{data}", "--arch", "convnet", "--max-per-class", "1"], "--max-per-class"),
        (["--data", "{data}", "--arch", "convnet", "--learning-rate", "0"], "--learning-rate must be a number between"),
        (["--data", "{data}", "--arch", "convnet", "--learning-rate", "2"], "--learning-rate must be a number between"),
        (
            ["--data", "{data}", "--arch", "convnet", "--grayscale-augment", "1.5"],
            "--grayscale-augment must be a probability",
        ),
        (["--data", "{data}", "--arch", "convnet", "--stain-augment", "-0.1"], "--stain-augment must be a number"),
        (["--data", "{data}", "--arch", "convnet", "--site-augment", "fog"], "invalid choice: 'fog'"),
        (["--data", "{data}", "--arch", "convnet", "--learning-rate", "fast"], "invalid float value: 'fast'"),
        (["--data", "{data}", "--arch", "vgg19", "--weights-dir", "{empty}"], "No ImageNet weights for vgg19"),
        (["--data", "{data}", "--arch", "convnet", "--weights-dir", "{missing}"], "Weights folder not found"),
        (["--data", "{bad_classes}", "--arch", "convnet"], "Unknown class folder"),
        (["--data", "{data}"], "one of the arguments --arch --all is required"),
        (["--data", "{data}", "--arch", "convnet", "--split", "patient"], "invalid choice: 'patient'"),
    ],
)
def test_retrain_bad_arguments(args, message, synthetic_data, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad" / "Monocytes").mkdir(parents=True)
    paths = {
        "missing": tmp_path / "nope",
        "empty": tmp_path / "empty",
        "data": synthetic_data,
        "bad_classes": tmp_path / "bad",
    }
    args = [a.format(**paths) for a in args]
    with pytest.raises(CommandError) as excinfo:
        run("retrain", *args)
    assert message in str(excinfo.value)
    assert not ModelVersion.objects.exists()


def test_evaluate_and_diagnose_bad_arguments(convnet_result, tmp_path):
    version = registry.register_model(convnet_result)
    with pytest.raises(CommandError, match="Data folder not found"):
        run("evaluate", "--data", str(tmp_path / "nope"), "--model", version.name)
    with pytest.raises(CommandError, match="No model version named or numbered 'ghost'"):
        run("diagnose", str(tmp_path), "--model", "ghost")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(CommandError, match="No image files found"):
        run("diagnose", str(tmp_path / "nothing"), "--model", version.name)


def test_weights_are_found_by_keras_file_name(tmp_path):
    (tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"")
    (tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5").write_bytes(b"")
    assert services.find_weights(tmp_path, "resnet50").name.startswith("resnet50")
    assert services.find_weights(tmp_path, "mobilenetv2").name.startswith("mobilenet_v2")
    assert services.find_weights(tmp_path, "convnet") is None
    assert services.find_weights(None, "vgg19") is None


def test_known_architectures_match_the_ml_package():
    from ml.architectures import ARCHITECTURE_NAMES

    assert set(KNOWN_ARCHITECTURES) == set(ARCHITECTURE_NAMES)
    assert set(STUDY_ARCHITECTURES) <= set(ARCHITECTURE_NAMES)


def test_site_augmentations_match_the_ml_package():
    from ml.site_augmentation import SITE_AUGMENTATIONS as LAYERS
    from ml.site_shifts import SITE_AUGMENTATION_FAMILIES
    from training.options import SITE_AUGMENTATIONS

    assert set(SITE_AUGMENTATIONS) == set(LAYERS) == set(SITE_AUGMENTATION_FAMILIES)


def test_compare_models_prints_mean_and_spread_over_seeds():
    for seed, (accuracy, f1) in enumerate([(0.90, 0.88), (0.95, 0.94), (1.0, 1.0)], start=1):
        version = ModelVersion.objects.create(
            name=f"recipe-s{seed}",
            architecture="mobilenetv2",
            file_path=f"recipe-s{seed}/model.keras",
            sha256="0" * 64,
        )
        ModelRecord.objects.create(
            version=version,
            split={"mode": "grouped", "seed": seed},
            metrics={
                "test": {"accuracy": accuracy, "macro_f1": f1, "ece": 0.02 * seed, "loss": 0.1},
                "val": {"accuracy": accuracy, "macro_f1": f1, "ece": 0.01, "loss": 0.1},
            },
        )
    out, _ = run("compare_models", "recipe-s1", "recipe-s2", "recipe-s3", "--format", "json")
    report = json.loads(out)
    assert [row["seed"] for row in report["versions"]] == [1, 2, 3]
    test = report["spread"]["test"]
    assert test["n"] == 3 and test["accuracy"]["mean"] == pytest.approx(0.95)
    assert test["accuracy"]["std"] == pytest.approx(0.05)  # sample standard deviation
    assert (test["accuracy"]["min"], test["accuracy"]["max"]) == (0.90, 1.0)
    assert test["ece"]["mean"] == pytest.approx(0.04)

    text, _ = run("compare_models", "recipe-s1", "recipe-s2", "recipe-s3")
    assert "recipe-s2" in text and "accuracy: 95.00 ± 5.00 points [90.00 .. 100.00]" in text
    assert "ece: 0.040 ± 0.020 [0.020 .. 0.060]" in text

    with pytest.raises(CommandError, match="No model version named"):
        run("compare_models", "recipe-s1", "nope")


def _registered(trained_output, arch):
    from ml import artifacts

    folder = trained_output / arch
    metadata = artifacts.read_json(folder / "metadata.json")
    return registry.register_model({**metadata, "output_dir": str(folder), "model_path": str(folder / "model.keras")})


def test_build_ensemble_registers_the_average_of_models_on_one_split(trained_output, synthetic_data, tmp_path):
    import numpy as np

    from ml.images import prepare_image

    convnet, convnet_bn = _registered(trained_output, "convnet"), _registered(trained_output, "convnet_bn")
    out, _ = run(
        "build_ensemble",
        convnet.name,
        convnet_bn.name,
        "--data",
        str(synthetic_data),
        "--name",
        "duo",
        "--output",
        str(tmp_path / "ens"),
    )
    ensemble = ModelVersion.objects.get(name="duo")
    assert "Registered the ensemble as duo" in out and "test split" in out
    assert ensemble.architecture == "ensemble" and ensemble.record.split == convnet.record.split
    assert ensemble.input_size == SIZE
    assert ensemble.record.metrics["test"]["n"] == len(convnet.record.split["splits"]["test"])
    assert ensemble.smear_check == convnet.smear_check
    assert set(ensemble.record.preprocessing["members"]) == {convnet.name, convnet_bn.name}

    # Served like any version: its probabilities are the mean of the members'.
    image = next(synthetic_data.glob("*/*.png"))
    batch = prepare_image(image.read_bytes(), SIZE)[None].astype("float32")
    members = [registry.load_model(v).predict_on_batch(batch) for v in (convnet, convnet_bn)]
    np.testing.assert_allclose(
        registry.load_model(ensemble).predict_on_batch(batch), np.mean(members, axis=0), atol=1e-6
    )

    with pytest.raises(CommandError, match="at least two"):
        run("build_ensemble", convnet.name, "--data", str(synthetic_data))
    ModelRecord.objects.filter(version=convnet_bn).update(
        split={**convnet.record.split, "splits": {"train": [], "val": [], "test": []}}
    )
    with pytest.raises(CommandError, match="same split"):
        run("build_ensemble", convnet.name, convnet_bn.name, "--data", str(synthetic_data))


def test_register_run_registers_a_folder_trained_elsewhere_once(trained_output, settings):
    folder = trained_output / "convnet"
    out, _ = run("register_run", str(folder), "--name", "convnet-from-gpu", "--notes", "H100 run")
    version = ModelVersion.objects.get()
    assert version.name == "convnet-from-gpu" and version.notes == "H100 run" and not version.is_active
    assert "registered as convnet-from-gpu (convnet" in out
    registry.verify_file(version)
    assert registry.model_path(version).parent.parent == settings.MODEL_DIR  # copied in, not referenced
    out, _ = run("register_run", str(folder / "metadata.json"))  # the same bytes again
    assert "already registered as convnet-from-gpu" in out and ModelVersion.objects.count() == 1


def test_register_run_refuses_a_tampered_model_or_a_folder_without_a_run(trained_output, tmp_path):
    folder = trained_output / "convnet"
    with open(folder / "model.keras", "ab") as model_file:
        model_file.write(b"tampered")
    with pytest.raises(CommandError, match="sha256"):
        run("register_run", str(folder))
    with pytest.raises(CommandError, match="not a training run folder"):
        run("register_run", str(tmp_path / "nowhere"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metadata.json").write_text(json.dumps({"architecture": "convnet"}))
    with pytest.raises(CommandError, match="lacks input_size, sha256"):
        run("register_run", str(tmp_path / "other"))
    assert not ModelVersion.objects.exists()


def test_evaluate_on_a_part_of_the_recorded_split_reproduces_the_recorded_accuracy(
    convnet_result, synthetic_data, synthetic_eval_data
):
    version = registry.register_model(convnet_result)
    out, _ = run(
        "evaluate", "--data", str(synthetic_data), "--model", version.name, "--split", "test", "--format", "json"
    )
    result = json.loads(out)
    assert result["data"]["split_part"] == "test" and not result["data"]["flips"]
    assert result["data"]["images"] == len(convnet_result["split"]["splits"]["test"])
    assert sum(result["data"]["counts"].values()) == result["data"]["images"]
    assert result["metrics"]["accuracy"] == convnet_result["metrics"]["test"]["accuracy"]
    out, _ = run("evaluate", "--data", str(synthetic_data), "--model", version.name, "--split", "test", "--flips")
    assert "the test part of its recorded split" in out and "mean over 4 flips" in out
    # Another folder does not hold the recorded images: refused, not evaluated on whatever is there.
    with pytest.raises(CommandError, match="does not match"):
        run("evaluate", "--data", str(synthetic_eval_data), "--model", version.name, "--split", "test")
