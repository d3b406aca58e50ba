"""Upstream failures mapped to stable codes with messages a user can act on."""

import email.utils
import html
import json
import re
import time
from typing import Any

import httpx

from .types import LlmError, ProviderConfig

RETRY_AFTER_CAP = 60.0  # like Meta's SDKs: longer hints fall back to our own backoff
DETAIL_LIMIT = 300
CONTEXT_HINTS = ("context", "too long", "too many tokens", "maximum length", "max_model_len")
MISSING_MODEL_HINTS = ("not found", "does not exist", "unknown model", "invalid model", "no model")
# Upstream text is redacted whole before it is cut to DETAIL_LIMIT; only an absurdly long body
# is first cut here, and a secret split at this point lies far past DETAIL_LIMIT anyway.
SCAN_LIMIT = 65_536
REDACTED = "[redacted]"
LLAMA_API_HOST = "api.llama.com"  # its OpenAI-compatible endpoint too (/compat/v1)
# Anything that looks like a credential, whoever's it is: bearer tokens, prefixed API keys
# (sk-..., LLM|...), and long unbroken runs mixing letters and digits such as raw tokens
# (model names such as Llama-4-Maverick-17B-128E-Instruct-FP8 are short pieces, and stay).
SECRET_PATTERN = re.compile(
    r"(?P<bearer>(?i:bearer)\s+[^\s\"',;]+)"
    r"|(?P<llama>LLM\|[^\s\"',;]+)"
    r"|(?P<prefixed>\b(?:sk|pk|rk|ak|hf|gsk|xai|key|api|tok|token|secret)[-_][\w.~+/=-]{8,})"
    r"|(?P<run>[A-Za-z0-9]{20,})"
)


def _hide(match: re.Match[str]) -> str:
    found = match.group()
    if match.lastgroup == "run" and not (
        any(c.isdigit() for c in found) and any(c.isalpha() for c in found)
    ):
        return found  # a long word or number, not a token
    return REDACTED


def error_from_response(
    response: httpx.Response, body: bytes, config: ProviderConfig, model: str | None = None
) -> LlmError:
    status = response.status_code
    detail = _detail_from_body(body, config.api_key)
    code, message = _classify(status, detail, model, server_name(config), config.address_set_in)
    return LlmError(
        code,
        message,
        retryable=status in (408, 409, 429) or status >= 500,
        status=status,
        request_id=request_id_from(response.headers),
        retry_after=retry_after_from(response.headers),
    )


def server_name(config: ProviderConfig) -> str:
    """The server as a message names it: the Llama API, or another OpenAI-compatible one
    (vLLM, Ollama...) by its host, so that nobody looks for the fault at Meta."""
    host = httpx.URL(config.base_url).host
    if config.protocol == "llama" or host == LLAMA_API_HOST:
        return "The Llama API"
    return f"The model server at {host}"


def server_in_sentence(config: ProviderConfig) -> str:
    """`server_name` after the start of a sentence: "the Llama API", "the model server at h"."""
    return "t" + server_name(config)[1:]


class DestinationRefused(Exception):
    """A network policy refused the destination before connecting; retrying cannot help."""


def error_from_exception(exc: BaseException, config: ProviderConfig) -> LlmError:
    server = server_in_sentence(config)
    if server == "the Llama API":  # another server's name carries its host already
        server += f" at {httpx.URL(config.base_url).host}"
    if isinstance(exc.__cause__, DestinationRefused):
        return LlmError("provider_refused", str(exc.__cause__), retryable=False)
    if isinstance(exc, httpx.ConnectTimeout):
        message = (
            f"Could not connect to {server} within {config.connect_timeout:g} s:"
            f" check {config.address_set_in} and the network."
        )
        return LlmError("timeout", message, retryable=True)
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        message = (
            f"{server_name(config)} did not start answering within"
            f" {config.first_token_timeout:g} s: try again in a moment."
        )
        return LlmError("timeout", message, retryable=True)
    if isinstance(exc, httpx.ConnectError):
        message = f"Could not reach {server}: check {config.address_set_in} and the network."
        return LlmError("upstream_unavailable", message, retryable=True)
    message = (
        f"The connection to {server_in_sentence(config)} dropped before the answer started:"
        " try again."
    )
    return LlmError("upstream_unavailable", message, retryable=True)


def error_from_body(body: dict[str, Any], config: ProviderConfig) -> LlmError:
    """An error object sent with a success status: a stream's event or a whole body."""
    detail = _detail_from_json(body, config.api_key)
    message = f"{server_name(config)} reported an error while answering: {detail}"
    return LlmError("upstream_unavailable", message, retryable=True, detail=detail)


def interrupted(reason: str, request_id: str | None) -> LlmError:
    message = f"The answer was cut off: {reason}. Regenerate to try again."
    return LlmError("interrupted", message, retryable=True, request_id=request_id)


def request_id_from(headers: httpx.Headers) -> str | None:
    value: str | None = headers.get("x-request-id") or headers.get("request-id")
    return value


def rate_limits_from(headers: httpx.Headers) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.startswith("x-ratelimit-")}


def retry_after_from(headers: httpx.Headers) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, retry-after seconds or date)."""
    if milliseconds := headers.get("retry-after-ms"):
        try:
            return _capped(float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return _capped(float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    try:
        return _capped(email.utils.mktime_tz(parsed) - time.time()) if parsed else None
    except (OverflowError, ValueError):  # a date no clock reaches
        return None


def _capped(seconds: float) -> float | None:
    return seconds if 0 <= seconds <= RETRY_AFTER_CAP else None


def _classify(
    status: int, detail: str, model: str | None, server: str, address_set_in: str
) -> tuple[str, str]:
    lowered = detail.lower()
    if status in (401, 403):
        return "auth_failed", (
            f"{server} rejected the key (HTTP {status}):"
            " check LLAMA_API_KEY or the team's provider key."
        )
    if status == 413 or (status in (400, 422) and any(h in lowered for h in CONTEXT_HINTS)):
        return "context_too_long", (
            "The conversation is too long for the model's context window:"
            " start a new conversation or lower max tokens."
        )
    names_model = "model" in lowered and any(h in lowered for h in MISSING_MODEL_HINTS)
    if (status == 404 and "model" in lowered) or (status in (400, 422) and names_model):
        return "model_not_found", (
            f"{server} does not offer the model '{model or '?'}': pick another model."
        )
    if status == 404:
        return (
            "bad_request",
            f"{server} has no such endpoint (HTTP 404): check {address_set_in}.",
        )
    if status == 429:
        return "rate_limited", (
            f"{server} said its rate limit was reached: wait a moment and try again."
        )
    if status == 408:
        return "timeout", f"{server} timed out handling the request: try again."
    if status == 409 or status >= 500:
        return "upstream_unavailable", (
            f"{server} is unavailable right now (HTTP {status}): try again in a moment."
        )
    return "bad_request", f"{server} refused the request (HTTP {status}): {detail}"


def _detail_from_body(body: bytes, api_key: str) -> str:
    text = body[:SCAN_LIMIT].decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        if text.lstrip().startswith("<"):  # a proxy's error page: its words, not its markup
            text = _page_text(text)
        return _shown(text.strip(), api_key) or "no details given"
    return _detail_from_json(data, api_key) if isinstance(data, dict) else _shown(text, api_key)


# A run of anything but angle brackets between them: linear, however the brackets come.
HTML_TAG = re.compile(r"<[^<>]*>")


def _page_text(page: str) -> str:
    """An HTML page's title, or else its text, on one line."""
    lowered = page.lower()
    start = lowered.find(">", lowered.find("<title") + 1) if "<title" in lowered else -1
    end = lowered.find("</title", start)
    text = page[start + 1 : end] if start != -1 and end != -1 else HTML_TAG.sub(" ", page)
    return " ".join(html.unescape(text).split())


def _detail_from_json(data: dict[str, Any], api_key: str) -> str:
    """Problem details (title/detail) or an OpenAI-style {"error": {"message"}} object."""
    error = data.get("error")
    if isinstance(error, dict):
        detail = error.get("message") or error.get("code")
    else:
        detail = error or data.get("detail") or data.get("title") or data.get("message")
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(_problem(item) for item in detail)
    return _shown(str(detail or "no details given")[:SCAN_LIMIT], api_key)


def _problem(item: Any) -> str:
    """One of FastAPI's validation errors as where and what, without the values it quotes."""
    if not isinstance(item, dict) or "msg" not in item:
        return str(item)
    where = item.get("loc")
    where = ".".join(map(str, where)) if isinstance(where, list) else ""
    return f"{where}: {item['msg']}" if where else str(item["msg"])


def _shown(text: str, api_key: str) -> str:
    """Upstream text fit to show a user: every secret redacted first, then cut to length."""
    return redact(text, api_key)[:DETAIL_LIMIT]


def redact(text: str, api_key: str = "") -> str:
    """The text with the given key and anything shaped like a credential replaced."""
    if api_key:
        text = text.replace(api_key, REDACTED)
    return SECRET_PATTERN.sub(_hide, text)
