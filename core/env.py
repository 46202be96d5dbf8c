"""Small, strict parsers for settings read from environment variables.

A typo in a boolean ("ture") must stop the start-up, not silently mean False.

Every parser also accepts ``NAME_FILE``: the path of a file holding the value (Docker and
Kubernetes secrets), read once at start-up, one trailing newline removed. Setting both NAME and
NAME_FILE is an error. Every variable read through these parsers is recorded in ``REGISTRY``
(name, kind, default), from which ``manage.py env_vars`` prints the documented table.
"""

import os
from dataclasses import dataclass

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingError(ValueError):
    pass


@dataclass(frozen=True)
class EnvVar:
    name: str
    kind: str
    default: object


REGISTRY = {}


def _read(name, kind, default):
    """The raw value of NAME, or the content of the file NAME_FILE names; None when neither is set."""
    REGISTRY.setdefault(name, EnvVar(name, kind, default))
    value = os.environ.get(name)
    file_name = os.environ.get(f"{name}_FILE")
    if not file_name:
        return value
    if value not in (None, ""):
        raise SettingError(f"Set {name} or {name}_FILE, not both.")
    try:
        with open(file_name, encoding="utf-8") as handle:
            content = handle.read()
    except OSError as exc:
        raise SettingError(f"{name}_FILE names {file_name!r}, which cannot be read: {exc.strerror}") from None
    return content[:-1] if content.endswith("\n") else content


def env_str(name, default=""):
    raw = _read(name, "text", default)
    return default if raw is None else raw


def env_bool(name, default=False):
    raw = _read(name, "true/false", default)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingError(f"{name} must be true or false, not {raw!r}")


def env_int(name, default):
    raw = _read(name, "integer", default)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingError(f"{name} must be an integer, not {raw!r}") from None


def env_float(name, default):
    raw = _read(name, "number", default)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingError(f"{name} must be a number, not {raw!r}") from None


def env_list(name, default=()):
    raw = _read(name, "list", list(default))
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name, default, choices):
    raw = _read(name, "|".join(choices), default)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise SettingError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return value
