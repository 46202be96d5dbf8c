from django.db import migrations

# In SQL, not in AuditEvent.Meta: the audit trail model is moving to its own app, and an index
# declared here in SQL follows the table wherever the model's state goes. It serves the trail
# filtered by a rare action (sign_refused): newest first without scanning every event.
CREATE = "CREATE INDEX IF NOT EXISTS audit_action_newest ON cases_auditevent (action, created_at DESC, id DESC)"
DROP = "DROP INDEX IF EXISTS audit_action_newest"


class Migration(migrations.Migration):

    dependencies = [
        ('cases', '0003_patient_newest_index'),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
