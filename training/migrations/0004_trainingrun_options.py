"""TrainingRun's request columns become one JSON field, RetrainOptions.to_json() (training.options).

Runs stored before this never set the colour, augmentation or learning-rate options: they trained
with the defaults, which is what their converted options say.
"""

from django.db import migrations, models

COLUMNS = (
    "data_dir",
    "architectures",
    "epochs",
    "image_size",
    "split_mode",
    "seed",
    "batch_size",
    "augment",
    "promote",
    "weights_dir",
    "max_per_class",
    "output_dir",
)
# Frozen copy of the defaults of the options the columns did not have.
ADDED = {"per_image_colour": False, "grayscale_augment": 0.0, "stain_augment": 0.0, "learning_rate": None}


def columns_to_options(apps, schema_editor):
    TrainingRun = apps.get_model("training", "TrainingRun")
    for run in TrainingRun.objects.all():
        options = {name: getattr(run, name) for name in COLUMNS}
        for name in ("promote", "weights_dir", "output_dir"):
            options[name] = options[name] or None  # "" was "not set"
        options["architectures"] = list(options["architectures"] or [])
        TrainingRun.objects.filter(pk=run.pk).update(options={**options, **ADDED})


def options_to_columns(apps, schema_editor):
    TrainingRun = apps.get_model("training", "TrainingRun")
    for run in TrainingRun.objects.all():
        options = run.options or {}
        values = {name: options[name] for name in COLUMNS if options.get(name) is not None}
        for name in ("promote", "weights_dir", "output_dir", "data_dir"):
            values[name] = values.get(name) or ""
        TrainingRun.objects.filter(pk=run.pk).update(**values)


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0003_modelversion_smear_check"),
    ]

    operations = [
        migrations.AddField(
            model_name="trainingrun",
            name="options",
            field=models.JSONField(
                default=dict,
                help_text="What to train: training.options.RetrainOptions.to_json() (data folder, architectures, epochs, image size, split, colour and augmentation settings, ...).",
            ),
        ),
        migrations.RunPython(columns_to_options, options_to_columns),
        # Only so that undoing this migration can add the column back to existing rows.
        migrations.AlterField(
            model_name="trainingrun",
            name="data_dir",
            field=models.CharField(
                default="", help_text="Labelled image folder (<root>/<Class>/*.jpg) on the worker.", max_length=500
            ),
        ),
        *[migrations.RemoveField(model_name="trainingrun", name=name) for name in COLUMNS],
    ]
