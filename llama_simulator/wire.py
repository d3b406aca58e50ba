"""Reply shapes of the native Llama API and of the OpenAI-compatible API, as bytes or dicts.

Stream chunks are pre-encoded around the text so a token costs one json.dumps of its text.
"""

import json
import time
from http import HTTPStatus


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def max_tokens(body: dict, wire: "NativeWire | OpenAIWire") -> object:
    """The cap on the answer's tokens the request set under one of its route's names, or None."""
    return next((body[f] for f in wire.max_tokens_fields if body.get(f) is not None), None)


def usage_numbers(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class NativeWire:
    """api.llama.com/v1 shapes, as read by Meta's llama-api-client SDK."""

    max_temperature = 1.0
    max_tokens_fields = ("max_completion_tokens",)
    roles = ("system", "user", "assistant", "tool")  # llama-api-client's MessageParam

    def error_body(self, status: int, detail: str, code: str) -> dict:
        return {"title": HTTPStatus(status).phrase, "detail": detail, "status": status}

    def reply(self, reply_id: str, model: str, text: str, stop: str, usage: dict) -> dict:
        return {
            "id": reply_id,
            "completion_message": {
                "role": "assistant",
                "content": {"type": "text", "text": text},
                "stop_reason": stop,
                "tool_calls": [],
            },
            "metrics": _metrics(usage),
        }

    def tool_reply(
        self, reply_id: str, model: str, calls: list[dict], usage: dict, text: str = ""
    ) -> dict:
        native_calls = [{"id": call["id"], "function": dict(call["function"])} for call in calls]
        return {
            "id": reply_id,
            "completion_message": {
                "role": "assistant",
                "content": {"type": "text", "text": text},
                "stop_reason": "tool_calls",
                "tool_calls": native_calls,
            },
            "metrics": _metrics(usage),
        }

    def stream(self, reply_id: str, model: str) -> "NativeStream":
        return NativeStream(reply_id)


class NativeStream:
    def __init__(self, reply_id: str):
        self._id = _dumps(reply_id)
        self._progress = self._event_prefix("progress")

    def _event_prefix(self, event_type: str) -> bytes:
        return b'data: {"id":%s,"event":{"event_type":"%s","delta":{"type":"text","text":' % (
            self._id,
            event_type.encode(),
        )

    def start(self) -> bytes:
        return self._event_prefix("start") + b'""}}}\n\n'

    def delta(self, text: str) -> bytes:
        return self._progress + _dumps(text) + b"}}}\n\n"

    def tool_pieces(self, call: dict, index: int = 0) -> bytes:
        """A tool call as progress deltas: id and name first, then the arguments in pieces."""
        head = {
            "type": "tool_call",
            "id": call["id"],
            "function": {"name": call["function"]["name"]},
        }
        deltas = [head] + [
            {"type": "tool_call", "function": {"arguments": piece}}
            for piece in _pieces(call["function"]["arguments"])
        ]
        return b"".join(
            b'data: {"id":%s,"event":{"event_type":"progress","delta":%s}}\n\n'
            % (self._id, _dumps(delta))
            for delta in deltas
        )

    def end(self, stop: str, usage: dict, include_usage: bool) -> bytes:
        complete = self._event_prefix("complete") + b'""},"stop_reason":%s}}\n\n' % _dumps(stop)
        metrics = self._event_prefix("metrics") + b'""},"metrics":%s}}\n\n' % _dumps(
            _metrics(usage)
        )
        return complete + metrics  # native streams always report usage and never send [DONE]

    def error(self, detail: str) -> bytes:
        problem = {"title": "Internal Server Error", "detail": detail, "status": 500}
        return b"event: error\ndata: %s\n\n" % _dumps(problem)


class OpenAIWire:
    """api.llama.com/compat/v1 shapes: the standard OpenAI chat.completions API."""

    max_temperature = 2.0
    # OpenAI's current name first; `max_tokens` is the deprecated one the openai SDK still sends.
    max_tokens_fields = ("max_completion_tokens", "max_tokens")
    roles = ("system", "developer", "user", "assistant", "tool")

    def error_body(self, status: int, detail: str, code: str) -> dict:
        kind = "invalid_request_error" if status < 500 else "server_error"
        return {"error": {"message": detail, "type": kind, "param": None, "code": code}}

    def reply(self, reply_id: str, model: str, text: str, stop: str, usage: dict) -> dict:
        return {
            "id": reply_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": stop,
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }

    def tool_reply(
        self, reply_id: str, model: str, calls: list[dict], usage: dict, text: str = ""
    ) -> dict:
        reply = self.reply(reply_id, model, text, "tool_calls", usage)
        message = reply["choices"][0]["message"]
        message["content"] = text or None
        message["tool_calls"] = [
            {"id": call["id"], "type": "function", "function": call["function"]} for call in calls
        ]
        return reply

    def stream(self, reply_id: str, model: str) -> "OpenAIStream":
        return OpenAIStream(reply_id, model)


class OpenAIStream:
    def __init__(self, reply_id: str, model: str):
        self._head = b'data: {"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s' % (
            _dumps(reply_id),
            int(time.time()),
            _dumps(model),
        )
        self._delta = self._head + b',"choices":[{"index":0,"delta":{"content":'

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""}, None)

    def delta(self, text: str) -> bytes:
        return self._delta + _dumps(text) + b'},"finish_reason":null}]}\n\n'

    def tool_pieces(self, call: dict, index: int = 0) -> bytes:
        """A tool call as delta.tool_calls at its index: id and name first, then the arguments."""
        head = {"index": index, "id": call["id"], "type": "function"}
        head["function"] = {"name": call["function"]["name"], "arguments": ""}
        deltas = [head] + [
            {"index": index, "function": {"arguments": piece}}
            for piece in _pieces(call["function"]["arguments"])
        ]
        return b"".join(self._chunk({"tool_calls": [delta]}, None) for delta in deltas)

    def end(self, stop: str, usage: dict, include_usage: bool) -> bytes:
        ending = self._chunk({}, stop)
        if include_usage:
            ending += self._head + b',"choices":[],"usage":%s}\n\n' % _dumps(usage)
        return ending + b"data: [DONE]\n\n"

    def error(self, detail: str) -> bytes:
        error = {
            "message": detail,
            "type": "server_error",
            "param": None,
            "code": "simulated_error",
        }
        return b"data: %s\n\n" % _dumps({"error": error})

    def _chunk(self, delta: dict, finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return self._head + b',"choices":[%s]}\n\n' % _dumps(choice)


def _pieces(text: str, size: int = 8) -> list[str]:
    """Arguments split over several deltas, as real models stream them."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _metrics(usage: dict) -> list[dict]:
    return [
        {"metric": "num_completion_tokens", "value": usage["completion_tokens"], "unit": "tokens"},
        {"metric": "num_prompt_tokens", "value": usage["prompt_tokens"], "unit": "tokens"},
        {"metric": "num_total_tokens", "value": usage["total_tokens"], "unit": "tokens"},
    ]
