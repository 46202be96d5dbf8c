"""Trigram indexes for the patient search (PostgreSQL only).

The search matches every word anywhere in the MRN, given or family name (``icontains``, which
PostgreSQL runs as ``UPPER(col::text) LIKE UPPER('%word%')``): no b-tree helps, so each search read
all of a site's patients (12,500 at 1M cases). A GIN trigram index on the same expression answers
it from the index. pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create
it. SQLite (the demo install) keeps scanning its few rows.
"""

from django.db import migrations

COLUMNS = ("mrn", "given_name", "family_name")


def _index(column):
    return f"patient_{column}_trgm"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in COLUMNS:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS {_index(column)} ON cases_patient USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS {_index(column)}")


class Migration(migrations.Migration):
    dependencies = [("cases", "0005_review_signature_method")]

    operations = [migrations.RunPython(create, drop)]
