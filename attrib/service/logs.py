"""Structured logs: one JSON object per line on stderr (access log, errors, uvicorn's own lines).

Access lines carry ``request_id``, ``method``, ``path``, ``route``, ``status``, ``duration_ms``,
``bytes_in``, ``bytes_out`` and ``client``. Headers are never logged, so neither are API keys.
"""

from __future__ import annotations

import json
import logging
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def log_config(level: str = "info", access: bool = True) -> dict:
    """A :func:`logging.config.dictConfig` dict for uvicorn and the service (every worker applies it)."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "attrib.service.logs.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},  # ours is richer
            "attrib.service": {"handlers": ["stderr"], "level": level, "propagate": False},
            "attrib.access": {"handlers": ["stderr"], "level": "INFO" if access else "CRITICAL", "propagate": False},
        },
    }
