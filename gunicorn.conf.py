"""gunicorn's settings file, read from the working folder (`gunicorn telediag.wsgi:application` run
in the repository or the image's /app): gunicorn's own log lines (start-up, worker restarts, timeouts)
in the application's format, JSON with TELEDIAG_LOG_FORMAT=json. Its access log stays off: the
application writes one access line per request, with the request id (ops.middleware)."""

import os

if os.environ.get("TELEDIAG_LOG_FORMAT", "").strip().lower() == "json":
    _handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "handlers": {"error_console": _handler},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            # Never on: its lines hold query strings, where searches put patients' names.
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
        "root": {"level": "INFO", "handlers": []},
    }
