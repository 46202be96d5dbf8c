"""The database cache table: throttle counters shared by every web process (see settings.CACHES).

Created by ``migrate`` so that no deployment forgets ``createcachetable``; a Redis cache
(TELEDIAG_CACHE_URL) simply leaves it unused.
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = []
    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
