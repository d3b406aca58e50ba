"""Request bodies and response shapes of the native Llama API and the OpenAI-compatible API."""

from dataclasses import dataclass

from .types import ChatParams, Usage


@dataclass
class ReplyState:
    """What the chunks of one reply have told us so far besides the text."""

    finish_reason: str | None = None
    usage: Usage | None = None
    response_id: str | None = None


class NativeProtocol:
    """api.llama.com/v1: completion_message replies, `event` stream chunks, metrics."""

    name = "llama"
    max_tokens_field = "max_completion_tokens"

    def chat_body(self, messages: list[dict], params: ChatParams, stream: bool) -> dict:
        return _chat_body(messages, params, stream, self.max_tokens_field)

    def read_chunk(self, chunk: dict, state: ReplyState) -> str:
        state.response_id = state.response_id or chunk.get("id")
        event = chunk.get("event") or {}
        if event.get("metrics"):
            state.usage = usage_from_metrics(event["metrics"])
        if event.get("event_type") == "complete":
            state.finish_reason = event.get("stop_reason") or "stop"
        delta = event.get("delta") or {}
        if delta.get("type") != "text":
            return ""  # tool-call deltas carry no text for the chat
        return delta.get("text") or ""

    def read_reply(self, body: dict) -> tuple[str, ReplyState]:
        message = body.get("completion_message") or {}
        content = message.get("content") or ""
        text = content if isinstance(content, str) else content.get("text") or ""
        usage = usage_from_metrics(body["metrics"]) if body.get("metrics") else None
        return text, ReplyState(message.get("stop_reason") or "stop", usage, body.get("id"))


class OpenAIProtocol:
    """OpenAI-compatible servers: choices/delta chunks, `[DONE]`, usage on request."""

    name = "openai"
    max_tokens_field = "max_tokens"

    def chat_body(self, messages: list[dict], params: ChatParams, stream: bool) -> dict:
        body = _chat_body(messages, params, stream, self.max_tokens_field)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def read_chunk(self, chunk: dict, state: ReplyState) -> str:
        state.response_id = state.response_id or chunk.get("id")
        if chunk.get("usage"):
            state.usage = usage_from_openai(chunk["usage"])
        text = ""
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            text = (choice.get("delta") or {}).get("content") or ""
            state.finish_reason = choice.get("finish_reason") or state.finish_reason
        return text

    def read_reply(self, body: dict) -> tuple[str, ReplyState]:
        choice = (body.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        usage = usage_from_openai(body["usage"]) if body.get("usage") else None
        return text, ReplyState(choice.get("finish_reason") or "stop", usage, body.get("id"))


PROTOCOL_ADAPTERS = {"llama": NativeProtocol(), "openai": OpenAIProtocol()}


def _chat_body(messages: list[dict], params: ChatParams, stream: bool, max_field: str) -> dict:
    body: dict = {"model": params.model, "messages": messages}
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.max_tokens is not None:
        body[max_field] = params.max_tokens
    if stream:
        body["stream"] = True
    return body


def usage_from_metrics(metrics: list[dict]) -> Usage:
    values = {item.get("metric"): item.get("value") or 0 for item in metrics}
    return Usage(
        int(values.get("num_prompt_tokens", 0)), int(values.get("num_completion_tokens", 0))
    )


def usage_from_openai(usage: dict) -> Usage:
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
