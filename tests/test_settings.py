"""The settings we rely on are the ones in effect (a typo in a setting name is silently ignored)."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from core.env import SettingError, env_bool, env_int, env_list

ROOT = Path(__file__).resolve().parent.parent


def test_env_bool_refuses_anything_but_true_or_false(monkeypatch):
    monkeypatch.setenv("X_FLAG", "ture")
    with pytest.raises(SettingError, match="X_FLAG"):
        env_bool("X_FLAG")
    monkeypatch.setenv("X_FLAG", "Yes")
    assert env_bool("X_FLAG") is True
    monkeypatch.setenv("X_FLAG", "0")
    assert env_bool("X_FLAG", True) is False
    monkeypatch.delenv("X_FLAG")
    assert env_bool("X_FLAG", True) is True


def test_env_int_and_list(monkeypatch):
    monkeypatch.setenv("X_NUM", "12x")
    with pytest.raises(SettingError):
        env_int("X_NUM", 1)
    monkeypatch.setenv("X_LIST", " a.example.org, b.example.org ,")
    assert env_list("X_LIST") == ["a.example.org", "b.example.org"]


def test_celery_settings_in_effect():
    from django.conf import settings

    from telediag.celery import app

    conf = app.conf
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_max_tasks_per_child == settings.CELERY_WORKER_MAX_TASKS_PER_CHILD
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.task_ignore_result is True
    assert conf.task_routes["inference.*"] == {"queue": "inference"}
    assert conf.task_routes["training.*"] == {"queue": "training"}


def _clean_env(overrides):
    """The real settings module with only the given variables (the test settings set several)."""
    prefixes = ("TELEDIAG_", "CELERY_", "DATABASE_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DJANGO_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(overrides)
    env["DJANGO_SETTINGS_MODULE"] = "telediag.settings"
    return env


def _run_settings(env_overrides, code):
    env = _clean_env(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_redis_visibility_timeout_above_hard_time_limit(tmp_path):
    result = _run_settings(
        {"DEBUG": "true", "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0", "TELEDIAG_VAR_DIR": str(tmp_path)},
        "from telediag.celery import app; c = app.conf; "
        "print(c.broker_transport_options['visibility_timeout'], c.task_time_limit)",
    )
    assert result.returncode == 0, result.stderr
    visibility, hard_limit = map(int, result.stdout.split())
    assert visibility > hard_limit


def test_production_refuses_to_start_without_secret_key(tmp_path):
    result = _run_settings({"DEBUG": "false", "TELEDIAG_VAR_DIR": str(tmp_path)}, "pass")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_profile_passes_check_deploy(tmp_path):
    env = {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "telediag.example.org",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "TELEDIAG_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_s3_storage_is_selected_by_bucket_variable(tmp_path):
    result = _run_settings(
        {"DEBUG": "true", "TELEDIAG_S3_BUCKET": "telediag-media", "TELEDIAG_VAR_DIR": str(tmp_path)},
        "from django.conf import settings; print(settings.STORAGES['default']['BACKEND'])",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "storages.backends.s3.S3Storage"


@pytest.mark.parametrize("value, expected", [("", "1"), ("16", "16"), ("0", "1")])
def test_inference_batch_max(tmp_path, value, expected):
    result = _run_settings(
        {"DEBUG": "true", "TELEDIAG_VAR_DIR": str(tmp_path), "TELEDIAG_INFERENCE_BATCH_MAX": value},
        "from django.conf import settings; print(settings.INFERENCE_BATCH_MAX)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_a_malformed_number_stops_the_start(tmp_path):
    result = _run_settings(
        {"DEBUG": "true", "TELEDIAG_VAR_DIR": str(tmp_path), "TELEDIAG_INFERENCE_BATCH_MAX": "lots"}, "pass"
    )
    assert result.returncode != 0 and "TELEDIAG_INFERENCE_BATCH_MAX must be an integer" in result.stderr
