# The audit app's own table name, once the cases app no longer claims the model.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        ("cases", "0002_auditevent_moved_to_audit"),
    ]

    operations = [
        migrations.AlterModelTable(name="auditevent", table=None),
    ]
