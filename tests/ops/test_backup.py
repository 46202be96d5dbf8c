"""scripts/backup.sh and scripts/restore.sh: a real PostgreSQL database and media and model folders
are backed up, then restored into a fresh database that the application accepts as migrated."""

import filecmp
import subprocess
import sys

import psycopg2
import pytest

from tests.conftest import smear_upload
from tests.inference.test_integration import worker_database_url
from tests.ops.conftest import ROOT, base_env, unavailable

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def run(script, folder, env):
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script), str(folder)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def fresh_database(postgres):
    from django.db import connection

    for tool in ("pg_dump", "pg_restore", "psql"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            unavailable(f"{tool} is not installed (apt-get install postgresql-client)")
    name = f"{connection.settings_dict['NAME']}_restore"
    admin = psycopg2.connect(worker_database_url().rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield worker_database_url().rsplit("/", 1)[0] + "/" + name
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def rows(url, sql):
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_backup_then_restore_into_a_fresh_database(world, fresh_database, settings, tmp_path):
    case = world.submit_case(files=[smear_upload("a.png"), smear_upload("b.png", colour=(10, 200, 30))])
    models = tmp_path / "models"
    (models / "v1").mkdir(parents=True)
    (models / "v1" / "model.keras").write_bytes(b"model bytes")
    source = worker_database_url()
    password_file = tmp_path / "db_password"
    password_file.write_text("unused-with-trust-auth\n")
    backup = tmp_path / "backups" / "telediag-1"
    env = base_env(
        DATABASE_URL=source,
        DATABASE_PASSWORD_FILE=password_file,
        MEDIA_ROOT=settings.MEDIA_ROOT,
        TELEDIAG_MODEL_DIR=models,
    )
    result = run("backup.sh", backup, env)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in backup.iterdir()) == ["SHA256SUMS", "database.dump", "media.tar.gz", "models.tar.gz"]
    assert run("backup.sh", backup, env).returncode == 2  # never overwrites a backup

    media, restored_models = tmp_path / "restored-media", tmp_path / "restored-models"
    env = base_env(DATABASE_URL=fresh_database, MEDIA_ROOT=media, TELEDIAG_MODEL_DIR=restored_models)
    result = run("restore.sh", backup, env)
    assert result.returncode == 0, result.stderr

    query = "SELECT id, clinical_notes, (SELECT count(*) FROM cases_smear s WHERE s.case_id = c.id) FROM cases_case c"
    assert rows(fresh_database, query) == rows(source, query) == [(case.pk, case.clinical_notes, 2)]
    patients = "SELECT mrn, given_name, family_name FROM cases_patient ORDER BY mrn"
    assert rows(fresh_database, patients) == rows(source, patients)
    users = "SELECT username, password FROM accounts_user ORDER BY username"
    assert rows(fresh_database, users) == rows(source, users)
    for smear in case.smears.all():
        assert filecmp.cmp(settings.MEDIA_ROOT / smear.image.name, media / smear.image.name, shallow=False)
    assert (restored_models / "v1" / "model.keras").read_bytes() == b"model bytes"

    # The application finds every migration applied in the restored database.
    check = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=base_env(
            DJANGO_SETTINGS_MODULE="telediag.settings",
            DATABASE_URL=fresh_database,
            SECRET_KEY="restore-check-secret-key-0123456789-abcdefghijklmnop",
            TELEDIAG_VAR_DIR=tmp_path / "var",
        ),
    )
    assert check.returncode == 0, check.stdout + check.stderr

    # A second restore into the now full database, or of a damaged backup, is refused.
    result = run(
        "restore.sh",
        backup,
        base_env(DATABASE_URL=fresh_database, MEDIA_ROOT=tmp_path / "m2", TELEDIAG_MODEL_DIR=tmp_path / "m3"),
    )
    assert result.returncode == 1 and "empty" in result.stderr
    with open(backup / "media.tar.gz", "ab") as handle:
        handle.write(b"x")
    result = run("restore.sh", backup, env)
    assert result.returncode == 1 and "damaged" in result.stderr
