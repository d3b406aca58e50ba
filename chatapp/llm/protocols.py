"""Request bodies and response shapes of the native Llama API and the OpenAI-compatible API.

Replies are read as they should be shaped; a value of another type where an object, a list or
text belongs raises TypeError or AttributeError, which the client reports as an unreadable
reply. Token counts are read leniently (see `token_count`)."""

import math
from dataclasses import dataclass, field
from typing import Any

from .types import ChatParams, ToolCall, Usage

# Far past what a model writes in one reply; also keeps the joining of the pieces cheap.
ARGUMENTS_LIMIT = 1 << 20
CALLS_LIMIT = 8 << 20  # all the calls of one reply


class CallsTooLong(ValueError):
    """The reply's tool calls passed their bounds; the message says what the server sent."""


@dataclass
class ReplyState:
    """What the chunks of one reply have told us so far besides the text."""

    finish_reason: str | None = None
    usage: Usage | None = None
    response_id: str | None = None
    # Tool calls pieced together from the deltas: {"id", "name", "arguments"} by position.
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    call_chars: int = 0  # of every piece of every call so far
    # A reasoning model's thoughts came (not shown): the server is answering, text or not.
    thinking: bool = False

    def add_call_piece(self, index: int, call_id: Any, name: Any, arguments: Any) -> None:
        # Each call is bounded, but not how many come: their sum is, before they fill memory.
        self.call_chars += sum(len(p) for p in (call_id, name, arguments) if isinstance(p, str))
        if self.call_chars > CALLS_LIMIT:
            raise CallsTooLong("tool calls longer than 8 MiB in all")
        call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        if isinstance(call_id, str) and call_id:
            call["id"] = call_id
        if isinstance(name, str) and name and not call["name"]:
            call["name"] = name
        if isinstance(arguments, str):
            if len(call["arguments"]) + len(arguments) > ARGUMENTS_LIMIT:
                raise CallsTooLong("a tool call longer than 1 MiB")
            call["arguments"] += arguments

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(call["id"] or f"call_{index}", call["name"], call["arguments"] or "{}")
            for index, call in sorted(self.calls.items())
            if call["name"]
        )


class NativeProtocol:
    """api.llama.com/v1: completion_message replies, `event` stream chunks, metrics."""

    name = "llama"
    max_tokens_field = "max_completion_tokens"

    def chat_body(
        self,
        messages: list[dict[str, Any]],
        params: ChatParams,
        stream: bool,
        tools: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        native = [_native_message(message) for message in messages]
        body = _chat_body(native, params, stream, self.max_tokens_field, tools)
        if params.response_format is not None:
            body["response_format"] = native_response_format(params.response_format)
        return body

    def read_chunk(self, chunk: dict[str, Any], state: ReplyState) -> str:
        state.response_id = state.response_id or _string(chunk.get("id"))
        event = chunk.get("event") or {}
        if event.get("metrics"):
            state.usage = usage_from_metrics(event["metrics"])
        if event.get("event_type") == "complete":
            state.finish_reason = _text(event.get("stop_reason")) or "stop"
        delta = event.get("delta") or {}
        if delta.get("type") == "tool_call":
            # A piece with a new id starts the next call; pieces without one, or with the id
            # of the last call again (the SDK types an id on every piece), continue that call.
            index = _unindexed_position(delta.get("id"), state)
            function = delta.get("function") or {}
            state.add_call_piece(
                index, delta.get("id"), function.get("name"), function.get("arguments")
            )
            return ""
        if delta.get("type") != "text":
            return ""
        return _text(delta.get("text"))

    def read_reply(self, body: dict[str, Any]) -> tuple[str, ReplyState]:
        message = body.get("completion_message") or {}
        content = message.get("content") or ""
        text = _text(content if isinstance(content, str) else content.get("text"))
        usage = usage_from_metrics(body["metrics"]) if body.get("metrics") else None
        reason = _text(message.get("stop_reason")) or "stop"
        state = ReplyState(reason, usage, _string(body.get("id")))
        _read_whole_calls(message.get("tool_calls"), state)
        return text, state


class OpenAIProtocol:
    """OpenAI-compatible servers: choices/delta chunks, `[DONE]`, usage on request."""

    name = "openai"
    max_tokens_field = "max_tokens"

    def chat_body(
        self,
        messages: list[dict[str, Any]],
        params: ChatParams,
        stream: bool,
        tools: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        body = _chat_body(messages, params, stream, self.max_tokens_field, tools)
        if params.response_format is not None:
            body["response_format"] = params.response_format
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def read_chunk(self, chunk: dict[str, Any], state: ReplyState) -> str:
        state.response_id = state.response_id or _string(chunk.get("id"))
        if chunk.get("usage"):
            state.usage = usage_from_openai(chunk["usage"])
        text = ""
        for choice in _list(chunk.get("choices")):
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = _text(delta.get("content"))
            # vLLM, llama.cpp (reasoning_content) and Ollama (reasoning) stream thoughts apart.
            state.thinking = state.thinking or bool(
                delta.get("reasoning_content") or delta.get("reasoning")
            )
            for piece in _list(delta.get("tool_calls")):
                if not isinstance(piece, dict):
                    continue
                index = piece.get("index")
                if index is None:
                    index = _unindexed_position(piece.get("id"), state)
                if isinstance(index, int):
                    function = piece.get("function") or {}
                    state.add_call_piece(
                        index,
                        piece.get("id"),
                        function.get("name"),
                        function.get("arguments"),
                    )
            state.finish_reason = _text(choice.get("finish_reason")) or state.finish_reason
        return text

    def read_reply(self, body: dict[str, Any]) -> tuple[str, ReplyState]:
        choice = (_list(body.get("choices")) or [{}])[0]
        message = choice.get("message") or {}
        text = _text(message.get("content"))
        usage = usage_from_openai(body["usage"]) if body.get("usage") else None
        reason = _text(choice.get("finish_reason")) or "stop"
        state = ReplyState(reason, usage, _string(body.get("id")))
        _read_whole_calls(message.get("tool_calls"), state)
        return text, state


PROTOCOL_ADAPTERS: dict[str, NativeProtocol | OpenAIProtocol] = {
    "llama": NativeProtocol(),
    "openai": OpenAIProtocol(),
}


def _chat_body(
    messages: list[dict[str, Any]],
    params: ChatParams,
    stream: bool,
    max_field: str,
    tools: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": params.model, "messages": messages}
    if tools:
        body["tools"] = tools
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.max_tokens is not None:
        body[max_field] = params.max_tokens
    if stream:
        body["stream"] = True
    return body


def native_response_format(response_format: dict[str, Any]) -> dict[str, Any]:
    """The native API takes `text` and `json_schema` formats only (llama-api-client's
    ResponseFormat): a JSON object is asked for as a schema of any object. Its json_schema
    is a name and a schema, without OpenAI's `strict`."""
    if response_format.get("type") == "json_object":
        return {
            "type": "json_schema",
            "json_schema": {"name": "json_object", "schema": {"type": "object"}},
        }
    spec = response_format.get("json_schema")
    if isinstance(spec, dict) and "strict" in spec:
        return {**response_format, "json_schema": {k: v for k, v in spec.items() if k != "strict"}}
    return response_format


def usage_from_metrics(metrics: list[dict[str, Any]]) -> Usage:
    values = {item.get("metric"): item.get("value") for item in _list(metrics)}
    return Usage(
        token_count(values.get("num_prompt_tokens")),
        token_count(values.get("num_completion_tokens")),
    )


def usage_from_openai(usage: dict[str, Any]) -> Usage:
    return Usage(
        token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens"))
    )


MAX_TOKEN_COUNT = 2**31 - 1  # what a message row stores


def token_count(value: Any) -> int:
    """A reported token count as a whole number a row can store: what is not a finite number
    counts 0, a fraction is rounded down, and a count out of range is brought into it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return min(max(int(value), 0), MAX_TOKEN_COUNT)


def _text(value: Any) -> str:
    """Text where the protocol puts text (absent is empty); another type is a broken reply."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"text expected, got {type(value).__name__}")
    return value


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"a list expected, got {type(value).__name__}")
    return value


def _string(value: Any) -> str | None:
    """An id: kept when it is text, ignored otherwise."""
    return value if isinstance(value, str) and value else None


def _native_message(message: dict[str, Any]) -> dict[str, Any]:
    """An assistant message holding tool calls, in the native API's shape (no "type")."""
    calls = message.get("tool_calls")
    if message.get("role") != "assistant" or not calls:
        return message
    native_calls = [{"id": call["id"], "function": call["function"]} for call in calls]
    return {**message, "tool_calls": native_calls, "stop_reason": "tool_calls"}


def _unindexed_position(call_id: Any, state: ReplyState) -> int:
    """Where a native piece, or an OpenAI piece without its `index` (which some servers leave
    out), belongs: a new id starts the next call; no id, or the id of the last call, continues
    that call."""
    if not state.calls:
        return 0
    last = max(state.calls)
    known = state.calls[last]["id"]
    starts = isinstance(call_id, str) and call_id and known and call_id != known
    return last + 1 if starts else last


def _read_whole_calls(calls: Any, state: ReplyState) -> None:
    for index, call in enumerate(calls if isinstance(calls, list) else []):
        if isinstance(call, dict):
            function = call.get("function") or {}
            state.add_call_piece(
                index, call.get("id"), function.get("name"), function.get("arguments")
            )
