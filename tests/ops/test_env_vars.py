"""Environment variables: NAME_FILE secrets, and the documented table that cannot drift."""

import re
import secrets
import subprocess
import sys

import pytest

from core.env import SettingError, env_bool, env_int, env_str
from tests.ops.conftest import ROOT
from tests.test_settings import _clean_env

SOURCE_GLOBS = ("*.py", "Makefile", "docker/*", "scripts/*", ".ci/run")


def test_a_value_can_come_from_a_secret_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t value\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    monkeypatch.delenv("X_SECRET", raising=False)
    assert env_str("X_SECRET") == "s3cr3t value"  # one trailing newline removed, nothing else

    (tmp_path / "flag").write_text("yes")
    monkeypatch.setenv("X_FLAG_FILE", str(tmp_path / "flag"))
    assert env_bool("X_FLAG") is True

    monkeypatch.setenv("X_SECRET", "also set")
    with pytest.raises(SettingError, match="X_SECRET or X_SECRET_FILE, not both"):
        env_str("X_SECRET")

    monkeypatch.setenv("X_NUM_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingError, match="X_NUM_FILE names .*missing.* cannot be read"):
        env_int("X_NUM", 1)


def test_settings_take_secret_key_database_password_and_s3_keys_from_files(tmp_path):
    values = {
        "SECRET_KEY": secrets.token_urlsafe(60),
        "DATABASE_PASSWORD": "db pass:/@",
        "TELEDIAG_S3_ACCESS_KEY_ID": "AKIAFILE",
        "TELEDIAG_S3_SECRET_ACCESS_KEY": "from-a-file",
    }
    env = {
        "DEBUG": "false",
        "TELEDIAG_VAR_DIR": str(tmp_path),
        "TELEDIAG_S3_BUCKET": "telediag-media",
        "DATABASE_URL": "postgres://telediag@db.internal:5432/telediag",
    }
    for name, value in values.items():
        (tmp_path / name).write_text(value + "\n")
        env[f"{name}_FILE"] = str(tmp_path / name)
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "o = s.STORAGES['default']['OPTIONS']; d = s.DATABASES['default']; "
        "print(s.SECRET_KEY); print(d['PASSWORD']); print(d['USER'], d['HOST']); print(o['access_key']); "
        "print(o['secret_key']); print(s.STORAGES['models']['OPTIONS']['secret_key'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_clean_env(env), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        values["SECRET_KEY"],
        "db pass:/@",
        "telediag db.internal",
        "AKIAFILE",
        "from-a-file",
        "from-a-file",
    ]

    # An unreadable secret file stops the start-up with its name.
    env["SECRET_KEY_FILE"] = str(tmp_path / "nope")
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=_clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "SECRET_KEY_FILE names" in result.stderr


def _source_variables():
    names = set()
    for pattern in SOURCE_GLOBS:
        for path in ROOT.glob(pattern) if "/" in pattern or pattern.startswith(".") else ROOT.rglob(pattern):
            parts = path.relative_to(ROOT).parts
            if path.is_file() and parts[0] not in (".venv", "tests", "var", "node_modules"):
                names |= set(re.findall(r"\bTELEDIAG_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")))
    from core.env_catalogue import CATALOGUE

    # NAME_FILE is NAME given as a secret file, unless NAME_FILE is itself a variable.
    return {
        name if name in CATALOGUE else name.removesuffix("_FILE")
        for name in names
        if not name.startswith("TELEDIAG_TEST_")
    }


def test_every_variable_is_described_and_nothing_described_is_stale():
    from core.env_catalogue import CATALOGUE

    # What the settings read, in a fresh process (this one's registry also holds the tests' names).
    code = "import django; django.setup(); from core.env import REGISTRY; print(*REGISTRY)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_clean_env({"DEBUG": "true"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    REGISTRY = set(result.stdout.split())
    assert {"SECRET_KEY", "TELEDIAG_S3_BUCKET", "TELEDIAG_WORKER_WARMUP"} <= REGISTRY
    in_source = _source_variables()
    assert set(REGISTRY) - set(CATALOGUE) == set(), "read by the settings but not in core/env_catalogue.py"
    assert in_source - set(CATALOGUE) == set(), "read by the code but not in core/env_catalogue.py"
    assert set(CATALOGUE) - set(REGISTRY) - in_source == set(), "described but read nowhere"


def test_the_operations_guide_lists_exactly_the_generated_table():
    from ops.env_vars import END, START

    result = subprocess.run(
        [sys.executable, "manage.py", "env_vars"],
        cwd=ROOT,
        env=_clean_env({"DEBUG": "true"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    generated = result.stdout
    assert str(ROOT) not in generated  # the same on every machine
    doc = (ROOT / "docs" / "operations.md").read_text()
    documented = doc[doc.index(START) : doc.index(END) + len(END)] + "\n"
    assert documented == generated, "docs/operations.md is stale: paste the output of `python manage.py env_vars`"
