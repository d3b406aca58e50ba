"""The OpenAI-compatible API's wire format: reading a chat completion request, writing its
answers (a whole completion, stream chunks) and its errors, in OpenAI's shapes.

Plain functions with no I/O; the views (`chatapp.chat.openai_api`) do the rest.
"""

import base64
import json
import math
import re
import time
import uuid
from typing import Any

from chatapp.chat.errors import ChatError
from chatapp.chat.json_output import AnswerFormat
from chatapp.chat.requests import ClientTurn, CompletionRequest
from chatapp.llm import Usage
from chatapp.teams import json_schemas
from chatapp.teams.models import ResponseFormat

# Accepted and ignored: they change nothing a team's rules decide, or have no upstream meaning.
# (safety_identifier and prompt_cache_key are what OpenAI's newer SDKs send instead of user.)
IGNORED_FIELDS = frozenset(
    {"user", "seed", "store", "metadata", "service_tier", "parallel_tool_calls"}
    | {"safety_identifier", "prompt_cache_key"}
)
# Of those, the end user's id and its newer names: strings, as OpenAI's API takes them.
IGNORED_STRINGS = ("user", "safety_identifier", "prompt_cache_key")
# Accepted only when empty (null, false, or the default), refused otherwise.
UNSUPPORTED_FIELDS = frozenset(
    {
        "functions",
        "function_call",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "audio",
        "modalities",
        "prediction",
        "presence_penalty",
        "frequency_penalty",
    }
)
# Their defaults that are not empty: what this API does anyway.
DEFAULTS: dict[str, Any] = {"modalities": ["text"]}
SETTING_FIELDS = ("model", "temperature", "top_p", "max_tokens", "max_completion_tokens")
KNOWN_FIELDS = frozenset(
    {"messages", "stream", "stream_options", "n", "response_format", "tools", "tool_choice", "stop"}
    | {*SETTING_FIELDS}
    | IGNORED_FIELDS
    | UNSUPPORTED_FIELDS
)
SYSTEM_ROLES = ("system", "developer")
MAX_TOOLS = 128  # as OpenAI's API
FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
TOOL_CHOICES = ("none", "auto", "required")
MAX_STOP_SEQUENCES = 4  # as OpenAI's API
MAX_STOP_LENGTH = 256  # characters: the relay looks for each in every piece of text


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
        retryable: bool | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.code, self.param, self.retry_after = code, param, retry_after
        self.allow = allow  # a 405's Allow header: the methods the address takes
        # False: sending it again cannot help, though its status (a 5xx) says it may.
        self.retryable = retryable

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


# The chat's codes that OpenAI's API names otherwise, as clients (and their libraries) check.
CHAT_CODES = {"context_too_long": "context_length_exceeded"}


def from_chat_error(error: ChatError, retry_after: int | None = None) -> OpenAIError:
    status, kind = CHAT_ERRORS.get(error.code, (400, "invalid_request_error"))
    param = CHAT_FIELD_PARAMS.get(error.field or "", error.field)
    code = CHAT_CODES.get(error.code, error.code)
    return OpenAIError(
        status, error.message, kind=kind, code=code, param=param, retry_after=retry_after
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
    for name in (name for name in data if name in UNSUPPORTED_FIELDS):  # the body's order
        if data[name] not in (None, False, 0, [], {}) and data[name] != DEFAULTS.get(name):
            raise invalid(
                f"{name} is not supported here: this API answers plain chat completions.",
                name,
                code="unsupported_parameter",
            )
    for name in IGNORED_STRINGS:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise invalid(f"{name} must be a string.", name)
        if value is not None:
            _storable(value, name)
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
    tools = _tools(data.get("tools"))
    request = CompletionRequest(
        turns=tuple(turns),
        system_prompt_text=system,
        settings=_settings(data),
        answer_format=_response_format(data.get("response_format")),
        format_given=data.get("response_format") is not None,
        tools=tools,
        tool_choice=_tool_choice(data.get("tool_choice"), tools),
        stop=_stop(data.get("stop")),
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
        # One of the two names, whichever is not null (a client may send both, one null).
        "max_tokens": next(
            (data[n] for n in ("max_completion_tokens", "max_tokens") if data.get(n) is not None),
            None,
        ),
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


def _stop(value: Any) -> tuple[str, ...]:
    """OpenAI's stop: a string or a list of up to 4, where the answer ends."""
    sequences = [value] if isinstance(value, str) else value
    if value is None or sequences == []:
        return ()
    if (
        not isinstance(sequences, list)
        or len(sequences) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_LENGTH for s in sequences)
    ):
        raise invalid(
            f"stop must be a string of 1 to {MAX_STOP_LENGTH} characters, or a list of at most"
            f" {MAX_STOP_SEQUENCES} of them.",
            "stop",
        )
    return tuple(dict.fromkeys(_storable(sequence, "stop") for sequence in sequences))


def _response_format(value: Any) -> AnswerFormat | None:
    """OpenAI's response_format: text (None), json_object, or json_schema {name, schema,
    strict?}."""
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
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise invalid("json_schema.strict must be true or false.", "response_format.json_schema")
    return AnswerFormat(ResponseFormat.JSON_SCHEMA, name, None, schema, strict)


def _messages(messages: Any) -> tuple[str | None, list[ClientTurn]]:
    """(the system messages joined, or None; the user and assistant turns, the results of an
    assistant turn's calls in it)."""
    if not isinstance(messages, list) or not messages:
        raise invalid("messages must be a non-empty list of {role, content}.", "messages")
    system: list[str] = []
    turns: list[ClientTurn] = []
    unanswered: dict[str, dict[str, str]] = {}  # the last assistant turn's calls, by id
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"{param} must be an object with role and content.", param)
        role = message.get("role")
        if unanswered and role != "tool":
            raise _unanswered(unanswered, param)
        content = message.get("content")
        images: tuple[tuple[str, bytes], ...] = ()
        if role == "user":
            content, images = _images(content, f"{param}.content")
        text = _text(content, f"{param}.content")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in unanswered:
                raise invalid(
                    f"{param}.tool_call_id must name a call of the assistant message before it"
                    " that has no tool message yet.",
                    f"{param}.tool_call_id",
                )
            unanswered.pop(call_id)["content"] = text
        elif role in SYSTEM_ROLES:
            system.append(text)
        elif role == "user":
            turns.append(ClientTurn(role, text, images=images))
        elif role == "assistant":
            calls = _calls(message.get("tool_calls"), param)
            turns.append(ClientTurn(role, text, calls))
            unanswered = {call["id"]: call for call in calls}
        else:
            raise invalid(
                f"{param}.role must be system, developer, user, assistant or tool.",
                f"{param}.role",
            )
    if unanswered:
        raise _unanswered(unanswered, "messages")
    last = turns[-1] if turns else None
    if last is None or not (last.role == "user" or last.tool_calls):
        raise invalid(
            "The last message (after any system ones) must be the user's, or the results of"
            " the tool calls before it.",
            "messages",
        )
    if not any(turn.role == "user" for turn in turns):
        raise invalid("messages must hold a user message.", "messages")
    if last.role == "user" and not (last.content.strip() or last.images):  # as on the chat page
        raise invalid(
            "The last user message is empty: write a question.", "messages", "empty_content"
        )
    return ("\n\n".join(system) if system else None), turns


def _unanswered(calls: dict[str, dict[str, str]], param: str) -> OpenAIError:
    return invalid(
        f"{param}: each tool call of the assistant message before it needs a tool message"
        f" first; none answers {', '.join(calls)}.",
        param,
    )


def _calls(value: Any, param: str) -> tuple[dict[str, str], ...]:
    """An assistant message's tool_calls: [{"id", "type": "function", "function": {"name",
    "arguments"}}], as {"id", "name", "arguments"}."""
    if value is None or value == []:
        return ()
    if not isinstance(value, list):
        raise invalid(f"{param}.tool_calls must be a list.", f"{param}.tool_calls")
    calls: dict[str, dict[str, str]] = {}
    for index, call in enumerate(value):
        where = f"{param}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        fields = (
            call.get("id") if isinstance(call, dict) else None,
            function.get("name") if isinstance(function, dict) else None,
            function.get("arguments") if isinstance(function, dict) else None,
        )
        if not all(isinstance(field, str) for field in fields) or not all(fields[:2]):
            raise invalid(
                f'{where} must be {{"id", "type": "function", "function": {{"name",'
                ' "arguments"}} with text values.',
                where,
            )
        call_id, name, arguments = (_storable(str(field), where) for field in fields)
        if call_id in calls:
            raise invalid(f"{where}: two calls have the id {call_id}.", where)
        calls[call_id] = {"id": call_id, "name": name, "arguments": arguments}
    return tuple(calls.values())


def _tools(value: Any) -> tuple[dict[str, Any], ...]:
    """The client's functions, as OpenAI's tools: [{"type": "function", "function": {"name",
    "description"?, "parameters"?, "strict"?}}]."""
    if value is None or value == []:
        return ()
    if not isinstance(value, list):
        raise invalid("tools must be a list of functions.", "tools")
    if len(value) > MAX_TOOLS:
        raise invalid(f"tools may hold at most {MAX_TOOLS} functions.", "tools")
    tools: dict[str, dict[str, Any]] = {}
    for index, tool in enumerate(value):
        param = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function":
            raise invalid(
                f'{param} must be {{"type": "function", "function": {{"name", "description",'
                ' "parameters"}}.',
                param,
            )
        name = function.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.fullmatch(name):
            raise invalid(
                f"{param}.function.name must be 1 to 64 letters, digits, _ or -.",
                f"{param}.function.name",
            )
        if name in tools:
            raise invalid(f"{param}: two tools are called {name}.", f"{param}.function.name")
        spec: dict[str, Any] = {"name": name}
        description = function.get("description")
        if description is not None:
            if not isinstance(description, str):
                raise invalid(f"{param}.function.description must be text.", f"{param}.function")
            spec["description"] = _storable(description, f"{param}.function.description")
        parameters = function.get("parameters")
        if parameters is not None:
            if problem := json_schemas.parameters_problem(parameters):
                where = f"{param}.function.parameters"
                raise invalid(f"{where}: {problem}", where)
            spec["parameters"] = parameters
        strict = function.get("strict")
        if strict is not None:
            if not isinstance(strict, bool):
                raise invalid(f"{param}.function.strict must be true or false.", param)
            spec["strict"] = strict
        tools[name] = {"type": "function", "function": spec}
    return tuple(tools.values())


def _tool_choice(value: Any, tools: tuple[dict[str, Any], ...]) -> str | dict[str, Any] | None:
    """OpenAI's tool_choice: "none", "auto", "required", or one function by name."""
    if value is None:
        return None
    names = [tool["function"]["name"] for tool in tools]
    if value in TOOL_CHOICES:
        if not names:  # nothing offered: "none" is what happens anyway
            if value == "none":
                return None
            raise invalid(f'tool_choice "{value}" needs tools.', "tool_choice")
        return value
    function = value.get("function") if isinstance(value, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or value.get("type") != "function":
        raise invalid(
            'tool_choice must be "none", "auto", "required" or {"type": "function",'
            ' "function": {"name"}}.',
            "tool_choice",
        )
    if name not in names:
        raise invalid(f"tool_choice names {name}, which is not among the tools.", "tool_choice")
    return {"type": "function", "function": {"name": name}}


def _images(content: Any, param: str) -> tuple[Any, tuple[tuple[str, bytes], ...]]:
    """(the other parts; a user message's image parts, {"type": "image_url", "image_url":
    {"url"}} with a base64 data URL, as (where each was, its bytes)): the server fetches no
    address."""
    if not isinstance(content, list):
        return content, ()
    images, rest = [], []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "image_url":
            rest.append(part)
            continue
        where = f"{param}[{index}].image_url"
        value = part.get("image_url")
        url = value.get("url") if isinstance(value, dict) else None
        if not isinstance(url, str):
            raise invalid(f'{where} must be {{"url": "data:image/png;base64,..."}}.', where)
        header, comma, encoded = url.partition(",")
        if not header.startswith("data:"):
            raise invalid(
                f"{where}: send the image itself, as a data URL (data:image/png;base64,...):"
                " this API fetches no address.",
                where,
                code="unsupported_content",
            )
        if not comma or not header.endswith(";base64"):
            raise invalid(
                f"{where}: the data URL must be base64 (data:image/png;base64,...).", where
            )
        try:
            images.append((where, base64.b64decode(encoded, validate=True)))
        except ValueError:  # binascii.Error
            raise invalid(f"{where}: the data URL's base64 is damaged.", where) from None
    return rest, tuple(images)


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
                f"{param}: only text parts, and images in user messages, are supported here"
                " (attach files on the chat page).",
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
        self,
        text: str,
        finish_reason: str | None,
        usage: Usage,
        extra: dict[str, Any],
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if tool_calls:  # as OpenAI's: no text is null beside calls
            message.update(content=text or None, tool_calls=tool_calls)
        return {
            **self._envelope("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
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
