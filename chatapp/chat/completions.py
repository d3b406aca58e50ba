"""The OpenAI-compatible API's wire format: reading a chat completion request, writing its
answers (a whole completion, stream chunks) and its errors, in OpenAI's shapes.

Plain functions with no I/O; the views (`chatapp.chat.openai_api`) do the rest.
"""

import json
import math
import time
import uuid
from typing import Any

from chatapp.chat.errors import ChatError
from chatapp.chat.json_output import AnswerFormat
from chatapp.chat.requests import CompletionRequest
from chatapp.llm import Usage
from chatapp.teams import json_schemas
from chatapp.teams.models import ResponseFormat

# Accepted and ignored: they change nothing a team's rules decide, or have no upstream meaning.
IGNORED_FIELDS = frozenset(
    {"user", "seed", "store", "metadata", "service_tier", "parallel_tool_calls"}
)
# Accepted only when empty (null, false, or the default), refused otherwise.
UNSUPPORTED_FIELDS = frozenset(
    {
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "stop",
        "audio",
        "modalities",
        "prediction",
        "presence_penalty",
        "frequency_penalty",
    }
)
SETTING_FIELDS = ("model", "temperature", "top_p", "max_tokens", "max_completion_tokens")
KNOWN_FIELDS = frozenset(
    {"messages", "stream", "stream_options", "n", "response_format", *SETTING_FIELDS}
    | IGNORED_FIELDS
    | UNSUPPORTED_FIELDS
)
SYSTEM_ROLES = ("system", "developer")
TURN_ROLES = ("user", "assistant")


class OpenAIError(Exception):
    """A refusal in OpenAI's error shape: {"error": {"message", "type", "code", "param"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
        allow: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.code, self.param, self.retry_after = code, param, retry_after
        self.allow = allow  # a 405's Allow header: the methods the address takes

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "code": self.code,
                "param": self.param,
            }
        }


def invalid(message: str, param: str | None = None, code: str = "invalid_request") -> OpenAIError:
    return OpenAIError(400, message, code=code, param=param)


# The chat's refusal codes (ChatError, PolicyError) as OpenAI-style statuses and types.
CHAT_ERRORS: dict[str, tuple[int, str]] = {
    "model_not_allowed": (400, "invalid_request_error"),
    "invalid_setting": (400, "invalid_request_error"),
    "invalid_frame": (400, "invalid_request_error"),
    "prompt_locked": (403, "permission_error"),
    "forbidden": (403, "permission_error"),
    "not_found": (404, "invalid_request_error"),
    "rate_limited": (429, "rate_limit_error"),
    "quota_exceeded": (429, "insufficient_quota"),
    "provider_refused": (502, "api_error"),
}
# The chat's field names as this API's parameters: the question and the prompt are messages.
CHAT_FIELD_PARAMS = {
    "max_tokens": "max_completion_tokens",
    "content": "messages",
    "system_prompt": "messages",
}


def from_chat_error(error: ChatError, retry_after: int | None = None) -> OpenAIError:
    status, kind = CHAT_ERRORS.get(error.code, (400, "invalid_request_error"))
    param = CHAT_FIELD_PARAMS.get(error.field or "", error.field)
    return OpenAIError(
        status, error.message, kind=kind, code=error.code, param=param, retry_after=retry_after
    )


def as_sent(error: OpenAIError, body: dict[str, Any]) -> OpenAIError:
    """The error naming max tokens by the name the request used (OpenAI takes two)."""
    if error.param in ("max_tokens", "max_completion_tokens"):
        sent_old_name = body.get("max_tokens") is not None
        error.param = "max_tokens" if sent_old_name else "max_completion_tokens"
    return error


# --- the request -------------------------------------------------------------------------


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise invalid("The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise invalid("The body must be a JSON object.")
    return data


def read_request(data: dict[str, Any]) -> tuple[CompletionRequest, bool, bool]:
    """(the request, stream?, include usage in the stream?) from a chat completion body."""
    for name in data:
        if name not in KNOWN_FIELDS:
            raise invalid(f"Unrecognized request argument supplied: {name}.", name)
    for name in UNSUPPORTED_FIELDS & data.keys():
        if data[name] not in (None, False, 0, [], {}):
            raise invalid(
                f"{name} is not supported here: this API answers plain chat completions.",
                name,
                code="unsupported_parameter",
            )
    count = data.get("n")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
        raise invalid("n must be an integer.", "n")
    if count not in (None, 1):
        raise invalid("Only n=1 is supported.", "n", code="unsupported_parameter")
    stream = _flag(data, "stream")
    options = data.get("stream_options")
    if options is not None and not stream:
        raise invalid("stream_options is only allowed when stream is true.", "stream_options")
    if options is not None and not isinstance(options, dict):
        raise invalid("stream_options must be an object.", "stream_options")
    include_usage = _flag(options or {}, "include_usage", "stream_options.include_usage")
    system, turns = _messages(data.get("messages"))
    request = CompletionRequest(
        turns=tuple(turns),
        system_prompt_text=system,
        settings=_settings(data),
        answer_format=_response_format(data.get("response_format")),
    )
    return request, stream, include_usage


def _flag(data: dict[str, Any], name: str, param: str | None = None) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"{param or name} must be true or false.", param or name)
    return value


def _settings(data: dict[str, Any]) -> dict[str, Any]:
    """The chat's settings the body asks for; the team's policy checks them in planning."""
    if data.get("max_tokens") is not None and data.get("max_completion_tokens") is not None:
        raise invalid("Send max_completion_tokens or max_tokens, not both.", "max_tokens")
    values = {
        "model": data.get("model"),
        "temperature": data.get("temperature"),
        "top_p": data.get("top_p"),
        "max_tokens": data.get("max_completion_tokens", data.get("max_tokens")),
    }
    model = values["model"]
    if model is not None and (not isinstance(model, str) or not model):
        raise invalid("model must be a model id from GET /v1/models.", "model")
    for name in ("temperature", "top_p"):
        value = values[name]
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        # Only a float can be infinite or NaN; an int may be too large to convert to one.
        if isinstance(value, float) and not math.isfinite(value):
            is_number = False
        if value is not None and not is_number:
            raise invalid(f"{name} must be a number.", name)
    return {name: value for name, value in values.items() if value is not None}


def _response_format(value: Any) -> AnswerFormat | None:
    """OpenAI's response_format: text (None), json_object, or json_schema {name, schema}."""
    kind = value.get("type") if isinstance(value, dict) else None
    if value is None or kind == "text":
        return None
    if kind == "json_object":
        return AnswerFormat(ResponseFormat.JSON_OBJECT)
    spec = value.get("json_schema") if kind == "json_schema" else None
    if not isinstance(spec, dict):
        raise invalid(
            'response_format is {"type": "text"}, {"type": "json_object"} or'
            ' {"type": "json_schema", "json_schema": {"name", "schema"}}.',
            "response_format",
        )
    name, schema = spec.get("name"), spec.get("schema")
    problem = (
        json_schemas.name_problem(name) if isinstance(name, str) else "json_schema needs a name."
    ) or json_schemas.schema_problem(schema)
    if problem:
        raise invalid(problem, "response_format.json_schema")
    return AnswerFormat(ResponseFormat.JSON_SCHEMA, name, None, schema)


def _messages(messages: Any) -> tuple[str | None, list[tuple[str, str]]]:
    """(the system messages joined, or None; the user and assistant turns)."""
    if not isinstance(messages, list) or not messages:
        raise invalid("messages must be a non-empty list of {role, content}.", "messages")
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"{param} must be an object with role and content.", param)
        role = message.get("role")
        text = _text(message.get("content"), f"{param}.content")
        if role in SYSTEM_ROLES:
            system.append(text)
        elif role in TURN_ROLES:
            turns.append((role, text))
        else:
            raise invalid(
                f"{param}.role must be system, developer, user or assistant.", f"{param}.role"
            )
    if not turns or turns[-1][0] != "user":
        raise invalid("The last message (after any system ones) must be the user's.", "messages")
    if not turns[-1][1].strip():  # as on the chat page
        raise invalid(
            "The last user message is empty: write a question.", "messages", "empty_content"
        )
    return ("\n\n".join(system) if system else None), turns


def _text(content: Any, param: str) -> str:
    """A message's content: a string, or a list of text parts (joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return _storable(content, param)
    if not isinstance(content, list):
        raise invalid(f"{param} must be a string or a list of text parts.", param)
    parts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            raise invalid(
                f"{param}: only text parts are supported here (attach files on the chat page).",
                param,
                code="unsupported_content",
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid(f"{param}: a text part needs a text string.", param)
        parts.append(_storable(text, param))
    return "".join(parts)


def _storable(text: str, param: str) -> str:
    if "\x00" in text:
        raise invalid(f"{param} must not contain NUL characters.", param)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"{param} must be valid Unicode text.", param) from None
    return text


# --- the answer --------------------------------------------------------------------------


class Completion:
    """One answer's identity (id, created, model), shared by its chunks or its whole body."""

    def __init__(self, model: str):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(
        self, text: str, finish_reason: str | None, usage: Usage, extra: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            **self._envelope("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason or "stop",
                }
            ],
            "usage": usage_body(usage),
            "system_fingerprint": None,
            **extra,
        }

    def chunk(
        self,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        *,
        with_usage: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> bytes:
        body = {
            **self._envelope("chat.completion.chunk"),
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
            "system_fingerprint": None,
            **(extra or {}),
        }
        if with_usage:
            body["usage"] = None  # as OpenAI does: only the last chunk carries the numbers
        return event(body)

    def usage_chunk(self, usage: Usage, extra: dict[str, Any]) -> bytes:
        body = {
            **self._envelope("chat.completion.chunk"),
            "choices": [],
            "usage": usage_body(usage),
            **extra,
        }
        return event(body)


def usage_body(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def event(body: dict[str, Any]) -> bytes:
    try:
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()
    except UnicodeEncodeError:  # half a surrogate pair (an emoji streamed in two): escaped
        return f"data: {json.dumps(body)}\n\n".encode()


DONE = b"data: [DONE]\n\n"
