"""Logging: JSON lines on stdout in production, each carrying the id of the request it belongs to.

Nothing here reads Django settings at import time, so settings.py can build LOGGING from it.
"""

import logging
import re
import uuid
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

# The request being served in this context (HTTP request or websocket connection), or None.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Ids from a proxy are reused only when they are short and plain, so they cannot forge log lines.
_INCOMING_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Settings whose values must never reach a log line, whatever a caller passes in.
SECRET_SETTINGS = ("LLAMA_API_KEY", "SECRET_KEY", "METRICS_TOKEN")
REDACTED = "[redacted]"


def new_request_id(incoming: str | None = None) -> str:
    """The proxy's X-Request-ID when it is well formed, else a fresh random id."""
    if incoming and _INCOMING_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id (or None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines, with the configured secrets blanked out of anything that slipped in."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configured_secrets() -> list[str]:
    from django.conf import settings

    if not settings.configured:
        return []
    values = (getattr(settings, name, "") for name in SECRET_SETTINGS)
    # Short values would blank out ordinary words; real keys are long.
    return [value for value in values if isinstance(value, str) and len(value) >= 8]


def redact(line: str) -> str:
    for secret in configured_secrets():
        if secret in line:
            line = line.replace(secret, REDACTED)
    return line


def logging_config(level: str, fmt: str) -> dict:
    """The LOGGING setting: `json` lines (production) or plain `text` (development)."""
    formatters = {
        "json": {
            "()": RedactingJsonFormatter,
            "fmt": "%(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"levelname": "level", "name": "logger", "asctime": "time"},
            "timestamp": "time",
        },
        "text": {
            "()": RedactingTextFormatter,
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {fmt: formatters[fmt]},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": fmt,
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            # The access log already records every response; keep Django's 4xx warnings out.
            "django.request": {"level": "ERROR" if level in ("INFO", "DEBUG") else level},
            # A line per upstream call would repeat the access log; failures are logged by us.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }
