from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0005_modelrecord"),
    ]

    # db_default: processes still running the previous code can insert versions after this migration.
    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="ood",
            field=models.JSONField(
                blank=True,
                db_default={},
                default=dict,
                help_text="Out-of-distribution model fitted on this model's training split, with its calibrated threshold and digest (ml.ood.MahalanobisOOD.to_dict()); empty: no OOD score, no 'outside validated conditions' flag.",
            ),
        ),
    ]
