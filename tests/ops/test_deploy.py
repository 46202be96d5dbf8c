"""docker/: the compose file and the images are the tested production shape.

Docker cannot run here: `docker compose config` validates the file where the compose plugin is
installed; everywhere, the file is parsed and every service's command is run here the way the
container runs it (gunicorn, the worker and its health check in the other tests of this folder;
migrate, beat and Flower below), and the Dockerfiles must install exactly requirements*.txt.
"""

import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from core.env_catalogue import CATALOGUE
from tests.ops.conftest import ROOT, Process, base_env, free_port, http_get, wait_until

DOCKER = ROOT / "docker"
APP_SERVICES = {"migrate", "web", "worker", "worker-gpu", "beat", "flower"}
# Variables of other programs that the compose file sets.
FOREIGN_VARIABLES = {
    "PROMETHEUS_MULTIPROC_DIR",
    "CUDA_VISIBLE_DEVICES",
    "TF_FORCE_GPU_ALLOW_GROWTH",
    "POSTGRES_USER",
    "POSTGRES_DB",
    "POSTGRES_PASSWORD",
}


def compose(*names):
    data = {}
    for name in names or ("compose.yml",):
        data.setdefault("overrides", []).append(yaml.safe_load((DOCKER / name).read_text()))
    return data["overrides"][0] if len(names) <= 1 else data["overrides"]


def command_of(service):
    command = service["command"]
    return command if isinstance(command, list) else shlex.split(command)


def steps_of(service):
    """The commands a service runs: `sh -c "a && b"` is two."""
    command = command_of(service)
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [command]


def documented_text():
    return (ROOT / "docs" / "operations.md").read_text() + (ROOT / "README.md").read_text()


def test_docker_compose_config_accepts_the_files(tmp_path):
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode
    ):
        pytest.skip("the docker compose plugin is not installed here; the file is checked by parsing below")
    copy = tmp_path / "docker"
    shutil.copytree(DOCKER, copy)
    (copy / "secrets").mkdir(exist_ok=True)
    for name in ("secret_key", "db_password", "metrics_token", "s3_access_key_id", "s3_secret_access_key"):
        (copy / "secrets" / name).write_text("x\n")
    shutil.copy(copy / "telediag.env.example", copy / "telediag.env")
    result = subprocess.run(
        ["docker", "compose", "-f", "compose.yml", "-f", "compose.s3.yml", "--profile", "gpu", "config", "-q"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_compose_has_the_production_services_configured_by_environment_and_secret_files():
    data = compose()
    services = data["services"]
    assert set(services) == {"db", "redis"} | APP_SERVICES
    assert set(data["secrets"]) == {"secret_key", "db_password", "metrics_token"}
    for name in APP_SERVICES:
        service = services[name]
        env = service["environment"]
        # Secrets only as files; no password in a URL.
        assert env["SECRET_KEY_FILE"] == "/run/secrets/secret_key" and "SECRET_KEY" not in env
        assert env["DATABASE_PASSWORD_FILE"] == "/run/secrets/db_password"
        assert not re.search(r"://[^/@]+:[^/@]+@", env["DATABASE_URL"])
        assert {"secret_key", "db_password"} <= set(service["secrets"])
        unknown = {key if key in CATALOGUE else key.removesuffix("_FILE") for key in env} - set(CATALOGUE)
        unknown -= FOREIGN_VARIABLES
        assert not unknown, f"{name} sets variables the settings do not read: {unknown}"
        # Only the one-shot service migrates and collects static files.
        steps = steps_of(service)
        runs_migrate = any(step[:3] == ["python", "manage.py", "migrate"] for step in steps)
        assert runs_migrate == (name == "migrate")
        if name != "migrate":
            assert service["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert services["migrate"]["restart"] == "no"
    assert [s[:3] for s in steps_of(services["migrate"])] == [
        ["python", "manage.py", "migrate"],
        ["python", "manage.py", "collectstatic"],
        ["python", "manage.py", "register_default_model"],
    ]
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert services["worker"]["environment"]["CUDA_VISIBLE_DEVICES"] == ""
    # Worker health check: the heartbeat check on the file the worker writes (tested in test_health.py).
    for name in ("worker", "worker-gpu"):
        test = services[name]["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "ops.heartbeat"]
        assert test[4] == services[name]["environment"]["TELEDIAG_WORKER_HEARTBEAT_FILE"]
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]

    s3_base, s3 = compose("compose.yml", "compose.s3.yml")
    assert set(s3["services"]) == APP_SERVICES
    for service in s3["services"].values():
        assert set(service["environment"]) == {"TELEDIAG_S3_ACCESS_KEY_ID_FILE", "TELEDIAG_S3_SECRET_ACCESS_KEY_FILE"}


def test_every_service_command_is_documented():
    text = documented_text()
    services = compose()["services"]
    for name in APP_SERVICES:
        for step in steps_of(services[name]):
            # The documented form: the program and its arguments up to the first option value.
            shown = " ".join(step)
            assert shown in text, f"docs/operations.md does not show the {name} command: {shown}"


def _app_env(tmp_path, redis_url, **extra):
    from tests.inference.test_integration import worker_database_url

    return base_env(
        DJANGO_SETTINGS_MODULE="telediag.settings",
        DATABASE_URL=worker_database_url(),
        SECRET_KEY="deploy-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        TELEDIAG_HTTPS="false",
        CELERY_BROKER_URL=redis_url,
        TELEDIAG_VAR_DIR=tmp_path / "var",
        STATIC_ROOT=tmp_path / "static",
        TELEDIAG_MODEL_DIR=tmp_path / "models",
        **extra,
    )


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_migrate_service_command_runs(postgres, redis_url, tmp_path):
    from training.models import ModelVersion

    command = command_of(compose()["services"]["migrate"])
    result = subprocess.run(
        command, cwd=ROOT, env=_app_env(tmp_path, redis_url), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "static" / "staticfiles.json").is_file()  # the manifest whitenoise serves from
    assert ModelVersion.objects.filter(is_active=True).exists()


@pytest.mark.integration
def test_the_beat_and_flower_service_commands_run(redis_url, tmp_path, processes):
    services = compose()["services"]
    env = _app_env(tmp_path, redis_url, TELEDIAG_DEMO="true", TELEDIAG_SWEEP_INTERVAL_S="2")
    (tmp_path / "var").mkdir()

    beat = [part.replace("/app/var", str(tmp_path / "var")) for part in command_of(services["beat"])]
    beat_process = Process([sys.executable, "-m", *beat], env, tmp_path / "beat.log")
    processes.append(beat_process)

    port = free_port()
    flower = [part.replace("--port=5555", f"--port={port}") for part in command_of(services["flower"])]
    flower_process = Process([sys.executable, "-m", *flower, "--address=127.0.0.1"], env, tmp_path / "flower.log")
    processes.append(flower_process)

    wait_until(
        lambda: http_get(f"http://127.0.0.1:{port}/healthcheck", timeout=5)[2] == b"OK", "Flower", flower_process
    )
    # Beat sends the sweeper at start-up: its message lands in the default queue.
    import redis

    client = redis.Redis.from_url(redis_url)
    wait_until(lambda: client.llen("default") >= 1, "beat to schedule the sweeper", beat_process, timeout=60)
    assert (tmp_path / "var" / "celerybeat-schedule").exists() or list((tmp_path / "var").glob("celerybeat-schedule*"))


def _pins(name, seen=None):
    """{package: version} of a requirements file and the files it includes; every line is pinned."""
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins.update(_pins(line[3:].strip()))
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]+\])?==([A-Za-z0-9_.+-]+)", line)
        assert match, f"{name}: {line!r} is not pinned with =="
        pins[match.group(1).lower()] = match.group(3)
    return pins


def _includes(name):
    files = [name]
    for line in (ROOT / name).read_text().splitlines():
        if line.startswith("-r "):
            files += _includes(line[3:].strip())
    return files


@pytest.mark.parametrize(
    "dockerfile, requirements", [("Dockerfile", "requirements.txt"), ("Dockerfile.gpu", "requirements-gpu.txt")]
)
def test_dockerfiles_install_exactly_the_pinned_requirements(dockerfile, requirements):
    text = (DOCKER / dockerfile).read_text()
    installs = re.findall(r"pip install ([^\n&]+)", text)
    assert installs == [f"-r {requirements}"], "the image installs its requirements file and nothing else"
    copied = set(re.search(r"COPY (requirements[^\n]+) \./", text).group(1).split())
    assert copied == set(_includes(requirements)), "the files pip reads must be copied before it runs"
    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}-" in text  # the Python the tests run on
    _pins(requirements)


def test_cpu_and_gpu_images_pin_the_same_versions_but_tensorflow_builds():
    cpu, gpu = _pins("requirements.txt"), _pins("requirements-gpu.txt")
    assert cpu.pop("tensorflow-cpu") == gpu.pop("tensorflow")  # same TensorFlow, CPU and CUDA builds
    assert cpu == gpu
    dev = _pins("requirements-dev.txt")
    assert {k: dev[k] for k in cpu} == {k: v for k, v in cpu.items()}  # tests run on the image's versions
    assert "moto" in dev and "moto" not in cpu  # the S3 test server stays out of the images
