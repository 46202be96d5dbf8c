from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0002_prediction_runtime"),
    ]

    operations = [
        migrations.AddField(
            model_name="prediction",
            name="is_smear",
            field=models.BooleanField(
                db_default=True,
                default=True,
                help_text="False: the model version's smear check says this is not a stained blood smear; no "
                "subtype was given (label not_a_smear) and the image is left out of the case result.",
            ),
        ),
        migrations.AddField(
            model_name="prediction",
            name="smear_reasons",
            field=models.JSONField(
                blank=True, db_default=[], default=list, help_text="Why the image is not taken for a smear."
            ),
        ),
    ]
