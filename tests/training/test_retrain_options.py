"""One retrain schema: RetrainOptions, TrainingRun.options, the admin form, `retrain` and the pipeline CLI.

The shipped model's recipe (its metadata.json records the training config) must survive the whole
chain unchanged, so the admin and `retrain` can train it again exactly.
"""

import inspect
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from ml import pipeline
from ml.train import TrainConfig, with_config_defaults
from training import services
from training.errors import TrainingError
from training.management.commands.retrain import Command as RetrainCommand
from training.models import TrainingRun
from training.options import DEFAULT_EPOCHS, RetrainOptions, option_fields
from training.tasks import retrain_task

pytestmark = pytest.mark.django_db

SHIPPED_METADATA = sorted(Path(settings.BASE_DIR, "models").glob("*/metadata.json"))


@pytest.fixture(params=SHIPPED_METADATA, ids=lambda path: path.parent.name)
def shipped(request):
    return json.loads(request.param.read_text())


def _config_without_run_details(config):
    return {k: v for k, v in config.items() if k != "time_limit_seconds"}


def test_a_model_is_shipped():
    assert SHIPPED_METADATA, "no models/*/metadata.json"


def test_shipped_recipe_round_trips_to_the_pipeline_config_that_trained_it(shipped):
    recorded_config = with_config_defaults(shipped["train_config"])
    options = RetrainOptions.from_metadata(shipped, output_dir=recorded_config["output_dir"])

    run = TrainingRun(options=options.to_json())
    run.full_clean()  # validated by RetrainOptions
    run.save()
    run.refresh_from_db()
    again = RetrainOptions.from_json(run.options)
    assert again == RetrainOptions.from_json(options.to_json())
    assert again.architectures == [shipped["architecture"]] and again.image_size == shipped["input_size"]

    kwargs = again.run_training_kwargs()
    split_settings = {"split_mode": kwargs.pop("split_mode"), "max_per_class": kwargs.pop("max_per_class")}
    config = pipeline.train_config(shipped["architecture"], again.output_dir, **kwargs).to_dict()
    assert _config_without_run_details(config) == _config_without_run_details(recorded_config)
    # The split: same mode, seed and size limit; run_training's block size and fractions are the recorded ones.
    split = shipped["split"]
    defaults = inspect.signature(pipeline.run_training).parameters
    assert split_settings == {"split_mode": split["mode"], "max_per_class": split["max_per_class"]}
    assert again.seed == split["seed"]
    assert list(defaults["fractions"].default) == split["fractions"]
    assert defaults["block_size"].default == split["block_size"]


def test_retrain_command_and_pipeline_cli_read_the_shipped_recipe_the_same(shipped, monkeypatch, tmp_path):
    options = RetrainOptions.from_metadata(shipped, data_dir=str(tmp_path / "data"))
    received = {}

    def record_retrain(request, **kwargs):
        received["retrain"] = request
        raise TrainingError("recorded")

    def record_run_training(data_dir, architecture, output_dir, **kwargs):
        received["pipeline"] = dict(kwargs, architecture=architecture)
        raise ValueError("recorded")

    monkeypatch.setattr(services, "retrain", record_retrain)
    monkeypatch.setattr(pipeline, "run_training", record_run_training)
    arguments = ["--data", str(options.data_dir), *options.arguments(), "--output", str(tmp_path / "out")]
    with pytest.raises(Exception, match="recorded"):
        call_command("retrain", *arguments)
    assert pipeline.main(arguments) == 2

    assert received["retrain"] == RetrainOptions(**{**options.to_json(), "output_dir": str(tmp_path / "out")})
    from_cli = received["pipeline"]
    assert from_cli["architecture"] == shipped["architecture"]
    assert {key: from_cli[key] for key in options.run_training_kwargs()} == options.run_training_kwargs()


def test_admin_form_expresses_the_shipped_recipe(
    shipped, admin_client, monkeypatch, tmp_path, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(retrain_task, "delay", lambda run_id: None)
    options = RetrainOptions.from_metadata(shipped, data_dir=str(tmp_path / "data"))
    form = {
        name: ("" if value is None else value)
        for name, value in options.to_json().items()
        if not isinstance(value, bool)
    }
    form.update({name: "on" for name, value in options.to_json().items() if value is True})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:training_trainingrun_add"), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    run = TrainingRun.objects.get()
    assert RetrainOptions.from_json(run.options) == RetrainOptions.from_json(options.to_json())
    assert run.options["per_image_colour"] is (shipped["train_config"]["normalisation"] == "per_image")
    assert run.options["learning_rate"] == shipped["train_config"]["learning_rate"]
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert "--image-size" in page and "--learning-rate" in page


def test_admin_form_has_a_field_for_every_option(admin_client):
    page = admin_client.get(reverse("admin:training_trainingrun_add")).content.decode()
    for option, _ in option_fields():
        assert f'name="{option.name}"' in page, option.name


def test_retrain_and_pipeline_share_flag_names_and_defaults():
    command_parser = RetrainCommand().create_parser("manage.py", "retrain")
    command_flags = {flag: action for action in command_parser._actions for flag in action.option_strings}
    pipeline_flags = {flag: action for action in pipeline.build_parser()._actions for flag in action.option_strings}
    retrain_only = {"--promote", "--weights-dir"}  # the registry's and this server's business
    for option, default in option_fields():
        flag = option.metadata["flag"]
        assert flag in command_flags, flag
        if flag in retrain_only:
            continue
        assert flag in pipeline_flags, f"python -m ml.pipeline has no {flag}"
        if option.metadata["kind"] not in ("bool", "path"):
            assert pipeline_flags[flag].default == default, flag
            assert command_flags[flag].default in (default, None), flag
    assert TrainConfig.__dataclass_fields__["epochs"].default == DEFAULT_EPOCHS
    assert inspect.signature(pipeline.run_training).parameters["epochs"].default == DEFAULT_EPOCHS


def test_training_run_refuses_options_retrain_would_refuse(tmp_path):
    good = RetrainOptions(data_dir=str(tmp_path)).to_json()
    TrainingRun(options=good).full_clean()
    for bad, message in (
        ({**good, "epochs": 0}, "--epochs must be"),
        ({**good, "learning_rate": 2}, "--learning-rate must be"),
        ({**good, "colour": "blue"}, "Unknown training option"),
        ({**good, "data_dir": None}, "--data is required"),
    ):
        with pytest.raises(ValidationError, match=message):
            TrainingRun(options=bad).full_clean()


def test_a_recipe_retraining_cannot_set_is_refused(shipped):
    changed = {**shipped, "train_config": {**shipped["train_config"], "patience": 3}}
    with pytest.raises(TrainingError, match="patience=3"):
        RetrainOptions.from_metadata(changed)


@pytest.mark.parametrize(
    "normalisation, flags",
    [("per_image_lab", ["--lab-colour"]), ("per_image_balanced_lab", ["--lab-colour", "--balance-colour"])],
)
def test_a_cielab_recipe_survives_retrain_and_the_pipeline(shipped, normalisation, flags):
    recorded = {**shipped, "train_config": {**shipped["train_config"], "normalisation": normalisation}}
    options = RetrainOptions.from_metadata(recorded).validate(check_paths=False)
    assert options.normalisation == normalisation
    arguments = options.arguments()
    assert set(flags) <= set(arguments) and "--per-image-colour" not in arguments
    parsed = pipeline.build_parser().parse_args(["--data", "data", "--output", "out", *arguments])
    assert pipeline._normalisation(parsed) == normalisation


def test_every_colour_normalisation_has_switches_that_select_it():
    from ml import architectures, colour_normalisation

    assert set(colour_normalisation.SWITCHES) - {None} <= set(architectures.NORMALISATIONS)
    for normalisation, switches in colour_normalisation.SWITCHES.items():
        assert colour_normalisation.from_switches(**switches) == normalisation
        assert RetrainOptions(data_dir="data", **switches).normalisation == normalisation


def test_colour_options_that_contradict_each_other_are_refused(tmp_path):
    from dataclasses import replace

    options = RetrainOptions(data_dir=str(tmp_path))
    for changes, message in (
        ({"per_image_colour": True, "lab_colour": True}, "not both"),
        ({"balance_colour": True}, "goes with --lab-colour"),
    ):
        with pytest.raises(TrainingError, match=message):
            replace(options, **changes).validate(check_paths=False)
