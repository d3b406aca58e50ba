"""Request bodies and response shapes of the native Llama API and the OpenAI-compatible API."""

from dataclasses import dataclass, field
from typing import Any

from .types import ChatParams, ToolCall, Usage


@dataclass
class ReplyState:
    """What the chunks of one reply have told us so far besides the text."""

    finish_reason: str | None = None
    usage: Usage | None = None
    response_id: str | None = None
    # Tool calls pieced together from the deltas: {"id", "name", "arguments"} by position.
    calls: dict[int, dict[str, str]] = field(default_factory=dict)

    def add_call_piece(self, index: int, call_id: Any, name: Any, arguments: Any) -> None:
        call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        if isinstance(call_id, str) and call_id:
            call["id"] = call_id
        if isinstance(name, str) and name and not call["name"]:
            call["name"] = name
        if isinstance(arguments, str):
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
        state.response_id = state.response_id or chunk.get("id")
        event = chunk.get("event") or {}
        if event.get("metrics"):
            state.usage = usage_from_metrics(event["metrics"])
        if event.get("event_type") == "complete":
            state.finish_reason = event.get("stop_reason") or "stop"
        delta = event.get("delta") or {}
        if delta.get("type") == "tool_call":
            # A piece with an id starts the next call; pieces without one continue the last.
            index = len(state.calls) - (0 if delta.get("id") or not state.calls else 1)
            function = delta.get("function") or {}
            state.add_call_piece(
                index, delta.get("id"), function.get("name"), function.get("arguments")
            )
            return ""
        if delta.get("type") != "text":
            return ""
        return delta.get("text") or ""

    def read_reply(self, body: dict[str, Any]) -> tuple[str, ReplyState]:
        message = body.get("completion_message") or {}
        content = message.get("content") or ""
        text = content if isinstance(content, str) else content.get("text") or ""
        usage = usage_from_metrics(body["metrics"]) if body.get("metrics") else None
        state = ReplyState(message.get("stop_reason") or "stop", usage, body.get("id"))
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
        state.response_id = state.response_id or chunk.get("id")
        if chunk.get("usage"):
            state.usage = usage_from_openai(chunk["usage"])
        text = ""
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            for piece in delta.get("tool_calls") or []:
                if isinstance(piece, dict) and isinstance(piece.get("index", 0), int):
                    function = piece.get("function") or {}
                    state.add_call_piece(
                        piece.get("index", 0),
                        piece.get("id"),
                        function.get("name"),
                        function.get("arguments"),
                    )
            state.finish_reason = choice.get("finish_reason") or state.finish_reason
        return text

    def read_reply(self, body: dict[str, Any]) -> tuple[str, ReplyState]:
        choice = (body.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        usage = usage_from_openai(body["usage"]) if body.get("usage") else None
        state = ReplyState(choice.get("finish_reason") or "stop", usage, body.get("id"))
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
    ResponseFormat): a JSON object is asked for as a schema of any object."""
    if response_format.get("type") == "json_object":
        return {
            "type": "json_schema",
            "json_schema": {"name": "json_object", "schema": {"type": "object"}},
        }
    return response_format


def usage_from_metrics(metrics: list[dict[str, Any]]) -> Usage:
    values = {item.get("metric"): item.get("value") or 0 for item in metrics}
    return Usage(
        int(values.get("num_prompt_tokens", 0)), int(values.get("num_completion_tokens", 0))
    )


def usage_from_openai(usage: dict[str, Any]) -> Usage:
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def _native_message(message: dict[str, Any]) -> dict[str, Any]:
    """An assistant message holding tool calls, in the native API's shape (no "type")."""
    calls = message.get("tool_calls")
    if message.get("role") != "assistant" or not calls:
        return message
    native_calls = [{"id": call["id"], "function": call["function"]} for call in calls]
    return {**message, "tool_calls": native_calls, "stop_reason": "tool_calls"}


def _read_whole_calls(calls: Any, state: ReplyState) -> None:
    for index, call in enumerate(calls if isinstance(calls, list) else []):
        if isinstance(call, dict):
            function = call.get("function") or {}
            state.add_call_piece(
                index, call.get("id"), function.get("name"), function.get("arguments")
            )
