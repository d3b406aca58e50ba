"""The values that go into and come out of the Llama API client."""

from dataclasses import dataclass, field
from typing import Any

import httpx

PROTOCOLS = ("llama", "openai")
MAX_ATTEMPTS_LIMIT = 5


def url_problem(url: str) -> str | None:
    """Why a server URL cannot be used (said after "the URL ..."), or None when it can."""
    if any(not c.isprintable() or c.isspace() for c in url):
        return "contains spaces or control characters"
    try:
        parsed = httpx.URL(url)
        host = parsed.host  # decodes an xn-- label, which may not be valid punycode
    except (httpx.InvalidURL, UnicodeError):
        return "is not a valid URL"
    if parsed.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not host:
        return "has no host name"
    return None


class LlmValidationError(ValueError):
    """A request parameter is out of range; raised before anything is sent."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ProviderConfig:
    base_url: str
    api_key: str = field(repr=False)
    protocol: str = "llama"
    connect_timeout: float = 10.0
    first_token_timeout: float = 60.0
    idle_timeout: float = 30.0
    total_timeout: float = 600.0
    max_attempts: int = 3
    # Where an operator sets base_url, as messages about an unreachable server point to it.
    address_set_in: str = "LLAMA_API_BASE_URL"

    def __post_init__(self) -> None:
        if problem := url_problem(self.base_url):
            raise LlmValidationError("base_url", f"base_url {problem}")
        if any(not c.isprintable() or c.isspace() for c in self.api_key):
            raise LlmValidationError(
                "api_key", "api_key cannot contain spaces or control characters"
            )
        if self.protocol not in PROTOCOLS:
            raise LlmValidationError("protocol", f"protocol must be one of {', '.join(PROTOCOLS)}")
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise LlmValidationError(
                "max_attempts", f"max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}"
            )
        for name in ("connect_timeout", "first_token_timeout", "idle_timeout", "total_timeout"):
            if not getattr(self, name) > 0:
                raise LlmValidationError(name, f"{name} must be a positive number of seconds")
        # Frozen dataclass: normalise through object.__setattr__ so URL joins stay simple.
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))


@dataclass(frozen=True)
class ChatParams:
    model: str
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    # OpenAI's shape: {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}
    response_format: dict[str, Any] | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCall:
    """A function the model asks for; `arguments` is the JSON object text it wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolCalls:
    """The model's turn ended asking for these tools; the Finish follows."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class Retrying:
    """Emitted before sleeping; `attempt` is the number of the attempt about to start."""

    attempt: int
    delay: float
    code: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Finish:
    finish_reason: str | None
    usage: Usage | None
    request_id: str | None
    rate_limits: dict[str, str]


@dataclass(frozen=True)
class StreamError:
    code: str
    message: str
    retryable: bool
    request_id: str | None = None
    status: int | None = None
    retry_after: float | None = None  # seconds the server asked to wait, when it said


StreamEvent = TextDelta | ToolCalls | Retrying | Finish | StreamError


class LlmError(Exception):
    """An upstream failure with a stable code; raised by the non-streaming calls."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.detail = detail  # the upstream's own words (redacted), from an error object

    def as_event(self) -> StreamError:
        return StreamError(
            self.code, self.message, self.retryable, self.request_id, self.status, self.retry_after
        )
