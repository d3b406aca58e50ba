"""Logging: JSON lines on stdout in production, each carrying the id of the request it belongs to.

Nothing here reads Django settings at import time, so settings.py can build LOGGING from it.
"""

import json
import logging
import re
import uuid
from contextvars import ContextVar
from functools import cache
from typing import Any
from urllib.parse import unquote, urlsplit

from django.urls import URLResolver, get_resolver
from pythonjsonlogger.json import JsonFormatter

# The request being served in this context (HTTP request or websocket connection), or None.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Ids from a proxy are reused only when they are short and plain, so they cannot forge log lines.
_INCOMING_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Settings whose values must never reach a log line, whatever a caller passes in.
SECRET_SETTINGS = (
    "LLAMA_API_KEY",
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "METRICS_TOKEN",
    "OIDC_RP_CLIENT_SECRET",
    "FIELD_ENCRYPTION_KEY",
    "UPLOADS_S3_SECRET_ACCESS_KEY",
)
# Service addresses that may carry a password: the whole address and its password are secret.
SECRET_URL_SETTINGS = ("DATABASE_URL", "EMAIL_URL", "REDIS_URL")
REDACTED = "[redacted]"
# Address parts that are credentials (whoever holds the address may use it): an invitation's
# token and its confirmation's signature, a share link's token, a password reset link's token,
# a signup confirmation's signature.
CREDENTIAL_PARAMETERS = ("token", "signature", "share_token")


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


def loggable_path(request) -> str:
    """The request's path with the credentials in it blanked out, as the route named them.

    A path that matched no route (a link that lost its final slash, or gained a character)
    keeps only the start of a credential's route: all after it is blanked."""
    path = request.path
    match = getattr(request, "resolver_match", None)
    if match is None:
        return _unmatched(path, request.path_info)
    for name in CREDENTIAL_PARAMETERS:
        value = match.kwargs.get(name)
        if isinstance(value, str) and value:
            path = path.replace(value, REDACTED)
    return path


def _unmatched(path: str, path_info: str) -> str:
    for start in credential_route_starts():
        if path_info.startswith(start) and len(path_info) > len(start):
            return path[: len(path) - len(path_info)] + start + REDACTED
    return path


@cache
def credential_route_starts() -> tuple[str, ...]:
    """Where each route holding a credential starts: "/s/", "/invite/"..."""
    starts = set()
    for template in _templates(get_resolver().url_patterns, "/"):
        first = template.find("<")
        named = re.findall(r"<(?:\w+:)?(\w+)>", template)
        if first > 0 and any(name in CREDENTIAL_PARAMETERS for name in named):
            starts.add(template[:first])
    return tuple(sorted(starts, key=len, reverse=True))


def _templates(patterns, prefix: str):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _templates(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern)


class RequestPathFilter(logging.Filter):
    """Django's own lines about a request (a 500 from `django.request`, `django.security`) name
    its path and carry the request: both as the access log writes them, credentials blanked
    and no query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        request: Any = getattr(record, "request", None)
        path = getattr(request, "path", None)
        if not isinstance(path, str):
            return True
        safe = loggable_path(request)
        record.request = f"{request.method} {safe}"
        if safe != path and isinstance(record.args, tuple):
            # Django passes the path escaped (log_response's unicode_escape) as an argument.
            escaped, blanked = (p.encode("unicode_escape").decode("ascii") for p in (path, safe))
            record.args = tuple(blanked if arg in (path, escaped) else arg for arg in record.args)
        return True


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines, with the configured secrets blanked out of anything that slipped in."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), in_json=True)


class RedactingTextFormatter(logging.Formatter):
    """Plain lines, one per record: what the message quotes (an address, a name a client or a
    model chose) cannot start a line of its own or send escapes to the terminal. The
    traceback below a line keeps its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _CONTROL_CHARACTERS.sub(_escaped, record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


# C0 and C1 controls (line breaks, ESC) and Unicode's line and paragraph separators.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def configured_secrets() -> list[str]:
    from django.conf import settings

    if not settings.configured:
        return []
    values: list = []
    for name in SECRET_SETTINGS:
        value = getattr(settings, name, "")
        values.extend(value if isinstance(value, list) else [value])
    for name in SECRET_URL_SETTINGS:
        url = getattr(settings, name, "")
        if isinstance(url, str) and url:
            password = url_password(url)
            values.extend([url, password, unquote(password)])
    # Short values would blank out ordinary words; real keys are long.
    return [value for value in values if isinstance(value, str) and len(value) >= 8]


def url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:  # a malformed address: the whole of it is redacted still
        return ""


def redact(line: str, in_json: bool = False) -> str:
    """The line with every configured secret blanked out; in a JSON line also as the encoder
    wrote it (a quote, a backslash or a letter beyond ASCII escaped)."""
    for secret in configured_secrets():
        for written in (secret, json.dumps(secret)[1:-1]) if in_json else (secret,):
            if written in line:
                line = line.replace(written, REDACTED)
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
        "filters": {
            "request_id": {"()": RequestIdFilter},
            "request_path": {"()": RequestPathFilter},
        },
        "formatters": {fmt: formatters[fmt]},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": fmt,
                "filters": ["request_id", "request_path"],
            }
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            # The access log already records every response; keep Django's 4xx warnings out.
            "django.request": {"level": "ERROR" if level in ("INFO", "DEBUG") else level},
            # A line per upstream call would repeat the access log; failures are logged by us.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            # The MCP SDK's own HTTP client, beside ours.
            "httpx2": {"level": "WARNING"},
            "httpcore2": {"level": "WARNING"},
            # Each tool server session's id at INFO (its credential, to some servers), and
            # the messages, tool results included, at DEBUG.
            "mcp.client": {"level": "WARNING"},
        },
    }
