"""One logging configuration for every bookd process: Gunicorn's master and workers
(``logconfig_dict`` in gunicorn_conf.py) and the listener (``bookd listen``).

Every line goes to standard output with its time, level, logger and pid:
readable text by default, or one JSON object per line with
``BOOKD_LOG_FORMAT=json`` (python-json-logger), Gunicorn's access log included.
Fields given with ``extra=`` (a finished message's ``message_id``, ``reason``...)
become JSON keys, and are in the text lines' message already.
"""

from __future__ import annotations

import logging.config
from typing import Any

from bookd.core.config import Settings

TEXT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(process)d %(name)s %(message)s"
"""The standard fields of every JSON line (python-json-logger reads the names)."""


def logging_config(settings: Settings, *, stream: str = "stdout") -> dict[str, Any]:
    """A logging.config.dictConfig for bookd's lines, Gunicorn's and botocore's.

    ``stream`` is "stdout" for the service's processes; the command-line tools log to
    "stderr", so that their output can be piped.
    """
    if settings.log_format == "json":
        formatter: dict[str, Any] = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": {"levelname": "level", "name": "logger", "process": "pid"},
            "timestamp": False,
        }
    else:
        formatter = {"format": TEXT}
    stdout = {
        "class": "logging.StreamHandler",
        "formatter": "bookd",
        "stream": f"ext://sys.{stream}",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"bookd": formatter},
        "handlers": {"stdout": stdout},
        "root": {"level": settings.log_level, "handlers": ["stdout"]},
        "loggers": {
            # Gunicorn's own loggers, on the same handler instead of their own streams.
            "gunicorn.error": {
                "level": settings.log_level,
                "handlers": ["stdout"],
                "propagate": False,
            },
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
            # botocore logs every retry at INFO; bookd's own lines already say what failed.
            "botocore": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
        },
    }


def setup(settings: Settings, *, stream: str = "stdout") -> None:
    """Configure logging for a process outside Gunicorn (``bookd listen`` and the CLI)."""
    logging.config.dictConfig(logging_config(settings, stream=stream))
