"""Case.ai_flagged (cases 0008) for the cases analysed before it existed: one UPDATE over them all."""

from django.db import migrations


def backfill(apps, schema_editor):
    from inference.flagging import cases_flag_recompute

    cases_flag_recompute(
        apps.get_model("cases", "Case").objects.all(),
        prediction_model=apps.get_model("inference", "Prediction"),
        job_model=apps.get_model("inference", "AnalysisJob"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0008_case_ai_flagged"),
        ("inference", "0006_prediction_ood_flags"),
    ]

    # Backwards: nothing to undo (cases 0008, unapplied after this, drops the column).
    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
