"""ModelVersion's training record (preprocessing, metrics, plots, split, library versions) moves
to a 1:1 ModelRecord, so serving paths load small ModelVersion rows without deferring columns."""

import django.db.models.deletion
from django.db import migrations, models

RECORD_FIELDS = ("preprocessing", "metrics", "plots", "split", "versions")


def versions_to_records(apps, schema_editor):
    ModelVersion = apps.get_model("training", "ModelVersion")
    ModelRecord = apps.get_model("training", "ModelRecord")
    for version in ModelVersion.objects.all().iterator(chunk_size=20):
        ModelRecord.objects.create(version=version, **{name: getattr(version, name) for name in RECORD_FIELDS})


def records_to_versions(apps, schema_editor):
    ModelVersion = apps.get_model("training", "ModelVersion")
    ModelRecord = apps.get_model("training", "ModelRecord")
    for record in ModelRecord.objects.all().iterator(chunk_size=20):
        ModelVersion.objects.filter(pk=record.version_id).update(
            **{name: getattr(record, name) for name in RECORD_FIELDS}
        )


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0004_trainingrun_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="ModelRecord",
            fields=[
                (
                    "version",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="record",
                        serialize=False,
                        to="training.modelversion",
                    ),
                ),
                ("preprocessing", models.JSONField(blank=True, default=dict)),
                ("metrics", models.JSONField(blank=True, default=dict)),
                ("plots", models.JSONField(blank=True, default=dict, help_text="Plot name → PNG path.")),
                ("split", models.JSONField(blank=True, default=dict)),
                (
                    "versions",
                    models.JSONField(blank=True, default=dict, help_text="Keras, backend and library versions."),
                ),
            ],
        ),
        migrations.RunPython(versions_to_records, records_to_versions),
        *[migrations.RemoveField(model_name="modelversion", name=name) for name in RECORD_FIELDS],
    ]
