"""One client for the native Llama API and OpenAI-compatible servers: streaming, retries, errors.

Consume `stream_chat` with `contextlib.aclosing(...)` (or inside the task you cancel) so that
stopping early closes the upstream response at once instead of when the generator is collected.
"""

import asyncio
import hashlib
import json
import random
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace
from typing import Any, TypeVar

import httpx
import orjson

from .deadline import ReadDeadline
from .errors import (
    SCAN_LIMIT,
    error_from_body,
    error_from_exception,
    error_from_response,
    interrupted,
    rate_limits_from,
    request_id_from,
    server_in_sentence,
    server_name,
)
from .limits import images_of
from .moderation import UNREADABLE, Verdict, guard_prompt, read_guard_reply, read_moderation
from .network import AiohttpTransport
from .protocols import PROTOCOL_ADAPTERS, CallsTooLong, ReplyState
from .sse import EVENT_LIMIT, EventTooLarge, sse_stream
from .types import (
    ChatParams,
    Finish,
    LlmError,
    ProviderConfig,
    Retrying,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCalls,
)
from .validation import validate_chat, validate_messages

MODELS_CACHE_SECONDS = 300.0
# A Guard model's verdict through chat completions: `unsafe`, then up to fourteen codes, each
# about three tokens to Llama's tokenizer, with room to spare.
GUARD_MAX_TOKENS = 64
REPLY_LIMIT = 8 << 20  # a whole reply (not streamed): a long answer is well under 1 MiB
# A streamed answer's text, in characters: the longest outputs offered are well under a million.
STREAM_TEXT_LIMIT = 8_000_000


class AnswerTooLong(Exception):
    """A streamed answer passed STREAM_TEXT_LIMIT characters."""


BACKOFF_BASE, BACKOFF_MAX, BACKOFF_JITTER = 0.5, 8.0, 0.25  # the same curve as Meta's SDKs
USER_AGENT = "llama-team-chat"

T = TypeVar("T")

_shared_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_models_cache: dict[tuple[str, str], tuple[float, list[str]]] = {}


def shared_http_client() -> httpx.AsyncClient:
    """The process-wide pooled client for the running event loop."""
    loop = asyncio.get_running_loop()
    client = _shared_clients.get(loop)
    if client is None or client.is_closed:
        transport = AiohttpTransport()
        client = httpx.AsyncClient(transport=transport, headers={"User-Agent": USER_AGENT})
        _shared_clients[loop] = client
    return client


class LlamaClient:
    def __init__(
        self,
        config: ProviderConfig,
        http: httpx.AsyncClient | None = None,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        self.config = config
        self._sleep = sleep  # the backoff clock: tests pass a recorder instead of waiting
        self._own_http = http
        self._protocol = PROTOCOL_ADAPTERS[config.protocol]
        self._server = server_name(config)  # as every message about the server names it
        self._timeout = httpx.Timeout(
            connect=config.connect_timeout,
            read=None,  # reads are bounded by our first-token, idle and total deadlines
            write=config.connect_timeout,
            pool=config.connect_timeout,
        )

    @property
    def http(self) -> httpx.AsyncClient:
        return self._own_http or shared_http_client()

    def check_chat(self, messages: list[dict[str, Any]], params: ChatParams) -> None:
        """Raise LlmValidationError for what stream_chat would refuse; nothing is sent."""
        validate_chat(messages, params, self.config.protocol)

    def stream_chat(
        self,
        messages: list[dict[str, Any]],
        params: ChatParams,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Validate now; stream TextDelta/Retrying events ending in one Finish or StreamError.

        With `tools` (function specs) offered, a turn in which the model calls some yields
        one ToolCalls just before its Finish; `tool_choice` (OpenAI's) goes with them.
        """
        validate_chat(messages, params, self.config.protocol)
        body = self._protocol.chat_body(messages, params, stream=True, tools=tools)
        if tools and tool_choice is not None:
            body["tool_choice"] = tool_choice
        return self._run(body, params.model, stream=True)

    async def complete_chat(
        self, messages: list[dict[str, Any]], params: ChatParams
    ) -> tuple[str, Finish]:
        """The whole answer at once; raises LlmError when it cannot be had."""
        validate_chat(messages, params, self.config.protocol)
        body = self._protocol.chat_body(messages, params, stream=False)
        parts: list[str] = []
        async with aclosing(self._run(body, params.model, stream=False)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                elif isinstance(event, Finish):
                    return "".join(parts), event
                elif isinstance(event, StreamError):
                    raise LlmError(
                        event.code,
                        event.message,
                        retryable=event.retryable,
                        status=event.status,
                        request_id=event.request_id,
                    )
        raise AssertionError("the event stream always ends with Finish or StreamError")

    async def list_models(self) -> list[str]:
        """Model ids the provider offers, cached for a few minutes per base URL and key."""
        key_hash = hashlib.sha256(self.config.api_key.encode()).hexdigest()
        cache_key = (self.config.base_url, key_hash)
        cached = _models_cache.get(cache_key)
        if cached and cached[0] > time.monotonic():
            return list(cached[1])
        data = await self._call_json("GET", "/models")
        ids = [
            item["id"] for item in data.get("data") or [] if isinstance(item, dict) and "id" in item
        ]
        _models_cache[cache_key] = (time.monotonic() + MODELS_CACHE_SECONDS, ids)
        return list(ids)

    async def moderate(
        self, messages: list[dict[str, Any]], model: str | None = None
    ) -> dict[str, Any]:
        """Llama Guard verdict: {"model", "results": [{"flagged", "flagged_categories"}]}."""
        validate_messages(messages)
        body: dict[str, Any] = {"messages": messages}
        if model:
            body["model"] = model
        return await self._call_json("POST", "/moderations", body)

    async def screen(
        self,
        messages: list[dict[str, Any]],
        *,
        categories: list[str],
        guard_model: str,
        guard_sees_images: bool,
        timeout: float,
    ) -> Verdict:
        """Llama Guard's verdict on the last message, retried like a chat request.

        Native: `POST /moderations`, the messages as they are, images too. OpenAI-compatible:
        `guard_model` through chat completions with Llama Guard's prompt listing `categories`,
        and the messages' images after it when `guard_sees_images`. Each attempt gets `timeout`
        seconds; raises LlmError when no verdict can be had.
        """
        validate_messages(messages)
        screener = self._limited_to(timeout)
        if self.config.protocol == "openai":
            text = guard_prompt(messages, categories)
            images = [p for m in messages for p in images_of(m)] if guard_sees_images else []
            content = [{"type": "text", "text": text}, *images] if images else text
            prompt = [{"role": "user", "content": content}]
            params = ChatParams(model=guard_model, temperature=0.0, max_tokens=GUARD_MAX_TOKENS)
            text, finish = await screener.complete_chat(prompt, params)
            if finish.finish_reason == "length":  # the categories past the cut would be lost
                raise LlmError("moderation_unreadable", UNREADABLE, retryable=False)
            return read_guard_reply(text)
        return read_moderation(await screener._retried(lambda: screener.moderate(messages)))

    def _limited_to(self, timeout: float) -> "LlamaClient":
        """This client with every attempt bounded by `timeout` and room for the retries."""
        config = replace(
            self.config,
            connect_timeout=min(self.config.connect_timeout, timeout),
            first_token_timeout=timeout,
            idle_timeout=timeout,
            total_timeout=timeout * self.config.max_attempts + BACKOFF_MAX,
        )
        return type(self)(config, self._own_http, sleep=self._sleep)

    async def _retried(self, call: Callable[[], Awaitable[T]]) -> T:
        """A plain request with the chat stream's retry rules (before any text: always)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.total_timeout
        attempt = 1
        while True:
            try:
                return await call()
            except LlmError as failure:
                delay = self._retry_delay(failure, attempt, deadline - loop.time())
                if delay is None:
                    raise
            attempt += 1
            await self._sleep(delay)

    async def _run(
        self, body: dict[str, Any], model: str, stream: bool
    ) -> AsyncGenerator[StreamEvent, None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.total_timeout
        attempt = 1
        while True:
            text_sent = False
            try:
                attempt_events = self._attempt(body, model, stream, deadline)
                async with aclosing(attempt_events) as events:
                    async for event in events:
                        text_sent = text_sent or isinstance(event, TextDelta)
                        yield event
                return
            except LlmError as error:
                failure = error
            delay = (
                None if text_sent else self._retry_delay(failure, attempt, deadline - loop.time())
            )
            if delay is None:
                yield failure.as_event()
                return
            attempt += 1
            yield Retrying(attempt=attempt, delay=delay, code=failure.code)
            await self._sleep(delay)

    def _retry_delay(self, failure: LlmError, attempt: int, remaining: float) -> float | None:
        """Seconds to wait before the next attempt, or None when we must give up."""
        if not failure.retryable or attempt >= self.config.max_attempts:
            return None
        delay = failure.retry_after
        if delay is None:
            delay = min(BACKOFF_BASE * 2 ** (attempt - 1), BACKOFF_MAX)
            delay *= 1 - BACKOFF_JITTER * random.random()
        return delay if delay < remaining else None

    async def _attempt(
        self, body: dict[str, Any], model: str, stream: bool, deadline: float
    ) -> AsyncGenerator[TextDelta | ToolCalls | Finish, None]:
        loop = asyncio.get_running_loop()
        first_deadline = min(loop.time() + self.config.first_token_timeout, deadline)
        request = self._request("POST", "/chat/completions", body, stream)
        response = await self._open(request, first_deadline, model)
        try:
            chunks = None  # the whole body, as it comes
            if stream and _is_json(response):
                # A whole reply or an error object; or events a server labelled JSON, which
                # the openai SDK reads as events too: the body's first byte tells.
                rest = response.aiter_bytes()
                start = await _within(first_deadline, _body_start(rest))
                chunks = _chained(start, rest)
                stream = not start.lstrip().startswith((b"{", b"["))
            if stream:
                reply = self._read_stream(response, first_deadline, deadline, chunks)
            else:
                reply = self._read_reply(response, first_deadline, chunks)
            async with aclosing(reply) as events:
                async for event in events:
                    yield event
        finally:
            await response.aclose()

    async def _read_stream(
        self,
        response: httpx.Response,
        first_deadline: float,
        deadline: float,
        chunks: AsyncIterator[bytes] | None,
    ) -> AsyncGenerator[TextDelta | ToolCalls | Finish, None]:
        loop = asyncio.get_running_loop()
        state = ReplyState()
        events = sse_stream(response, chunks)
        read_deadline, text_sent, length = ReadDeadline(first_deadline), False, 0
        done = False  # `[DONE]` after an answer: whole, even without a finish reason
        try:
            while item := await read_deadline.read(anext(events, None)):
                if item[1] == "[DONE]":
                    done = text_sent or bool(state.calls)
                    break
                if text := self._read_chunk(item, state):
                    text_sent = True
                    length += len(text)
                    if length > STREAM_TEXT_LIMIT:
                        raise AnswerTooLong
                    yield TextDelta(text)
                if text_sent or state.calls or state.thinking:
                    read_deadline.move(min(loop.time() + self.config.idle_timeout, deadline))
        except (TimeoutError, httpx.HTTPError, LlmError, EventTooLarge, AnswerTooLong) as exc:
            # Trouble after the finish reason arrived costs at most the trailing usage.
            if state.finish_reason is None:
                hit_total = read_deadline.when >= deadline
                raise self._stream_failure(exc, text_sent, hit_total, response) from None
        finally:
            read_deadline.close()
        if state.finish_reason is None and not done:
            raise self._stream_failure(None, text_sent, False, response)
        if calls := state.tool_calls():
            yield ToolCalls(calls)
        yield self._finish(response, state)

    async def _read_reply(
        self, response: httpx.Response, deadline: float, chunks: AsyncIterator[bytes] | None
    ) -> AsyncGenerator[TextDelta | ToolCalls | Finish, None]:
        body = await self._read_json(response, deadline, chunks)
        try:
            text, state = self._protocol.read_reply(body)
        except (TypeError, AttributeError) as exc:
            raise _unreadable(self._server) from exc
        except CallsTooLong as exc:
            raise _too_long(self._server, exc) from None
        yield TextDelta(text)
        if calls := state.tool_calls():
            yield ToolCalls(calls)
        yield self._finish(response, state)

    def _read_chunk(self, item: tuple[str, str], state: ReplyState) -> str:
        name, data = item
        chunk = _parse_json(data, self._server)
        if name == "error" or chunk.get("error"):  # "error": null is none (as in the SDKs)
            raise error_from_body(chunk, self.config)
        try:  # no context manager here: at chat pace this runs for every token
            return self._protocol.read_chunk(chunk, state)
        except (TypeError, AttributeError) as exc:
            raise _unreadable(self._server) from exc
        except CallsTooLong as exc:
            raise _too_long(self._server, exc) from None

    def _stream_failure(
        self, exc: BaseException | None, text_sent: bool, hit_total: bool, response: httpx.Response
    ) -> LlmError:
        """Before any text: a (retryable) error; after text: an interruption, never retried."""
        request_id = request_id_from(response.headers)
        server = server_in_sentence(self.config)
        too_large = f"{server} sent more than {EVENT_LIMIT >> 20} MiB without an event"
        if not text_sent:
            if isinstance(exc, LlmError):
                return exc
            if isinstance(exc, EventTooLarge):
                message = f"The reply could not be read: {too_large}."
                return LlmError(
                    "upstream_unavailable", message, retryable=True, request_id=request_id
                )
            if exc is None:
                message = f"{self._server} ended the reply before answering: try again."
                return LlmError(
                    "upstream_unavailable", message, retryable=True, request_id=request_id
                )
            error = error_from_exception(exc, self.config)
            error.request_id = request_id
            return error
        if isinstance(exc, TimeoutError) and hit_total:
            reason = f"it took longer than the {self.config.total_timeout:g} s limit"
        elif isinstance(exc, TimeoutError):
            reason = f"{server} sent nothing for {self.config.idle_timeout:g} s"
        elif isinstance(exc, LlmError) and exc.detail is not None:
            reason = f'{server} reported an error mid-answer ("{exc.detail}")'
        elif isinstance(exc, LlmError):
            reason = f"{server} reported an error mid-answer"
        elif isinstance(exc, EventTooLarge):
            reason = too_large
        elif isinstance(exc, AnswerTooLong):
            reason = f"the answer passed {STREAM_TEXT_LIMIT:,} characters"
        elif exc is None:
            reason = f"{server} ended the stream without finishing"
        else:
            reason = f"the connection to {server} dropped"
        return interrupted(reason, request_id)

    def _finish(self, response: httpx.Response, state: ReplyState) -> Finish:
        return Finish(
            finish_reason=state.finish_reason,
            usage=state.usage,
            request_id=request_id_from(response.headers) or state.response_id,
            rate_limits=rate_limits_from(response.headers),
        )

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, stream: bool
    ) -> httpx.Request:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        if self.config.api_key:  # a keyless server (vLLM, Ollama) may refuse an empty "Bearer "
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        url = self.config.base_url + path
        return self.http.build_request(
            method, url, json=body, headers=headers, timeout=self._timeout
        )

    async def _open(
        self, request: httpx.Request, deadline: float, model: str | None
    ) -> httpx.Response:
        """Send the request; a non-2xx status becomes an LlmError with the upstream details."""
        try:
            response = await _within(deadline, self.http.send(request, stream=True))
        except (TimeoutError, httpx.HTTPError) as exc:
            raise error_from_exception(exc, self.config) from None
        if response.is_success:
            return response
        try:
            raw, _ = await _within(deadline, _read_body(response.aiter_bytes(), SCAN_LIMIT))
        except (TimeoutError, httpx.HTTPError):
            raw = b""  # the status alone still says what went wrong
        finally:
            await response.aclose()
        raise error_from_response(response, raw, self.config, model)

    async def _read_json(
        self, response: httpx.Response, deadline: float, chunks: AsyncIterator[bytes] | None
    ) -> dict[str, Any]:
        """The body (or the rest of it, `chunks`) as a JSON object."""
        chunks = response.aiter_bytes() if chunks is None else chunks
        try:
            raw, cut = await _within(deadline, _read_body(chunks, REPLY_LIMIT))
        except (TimeoutError, httpx.HTTPError) as exc:
            raise error_from_exception(exc, self.config) from None
        if cut:
            message = f"{self._server} sent a reply longer than {REPLY_LIMIT >> 20} MiB: try again."
            raise LlmError("upstream_unavailable", message, retryable=True)
        data = _parse_json(raw, self._server)
        if data.get("error"):  # a success status around an error object, as gateways send
            raise error_from_body(data, self.config)
        return data

    async def _call_json(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One plain JSON request (no retries), bounded by the first-token timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(self.config.first_token_timeout, self.config.total_timeout)
        response = await self._open(self._request(method, path, body, False), deadline, None)
        try:
            return await self._read_json(response, deadline, None)
        finally:
            await response.aclose()


async def _read_body(chunks: AsyncIterator[bytes], limit: int) -> tuple[bytes, bool]:
    """The body (decoded) up to `limit` bytes, and whether it went on past them: what is not
    read is never held."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts)[:limit], True
    return b"".join(parts), False


async def _body_start(chunks: AsyncIterator[bytes]) -> bytes:
    """The body's first chunks, up to its first byte that is not white space (or its end, or
    a mebibyte of white space: what follows is for the reader to refuse)."""
    start = b""
    async for chunk in chunks:
        start += chunk
        if start.strip() or len(start) > EVENT_LIMIT:
            break
    return start


async def _chained(start: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if start:
        yield start
    async for chunk in rest:
        yield chunk


async def _within(deadline: float, awaitable: Awaitable[T]) -> T:
    # A fresh timeout per read: never held across a yield, so it cannot fire in the consumer.
    async with asyncio.timeout_at(deadline):
        return await awaitable


def _is_json(response: httpx.Response) -> bool:
    media_type: str = response.headers.get("content-type", "")
    media_type = media_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _unreadable(server: str) -> LlmError:
    """A reply in another shape than its protocol's (text that is a number, choices that are
    not a list) is an upstream failure like one that is not JSON."""
    message = f"{server} sent a reply in a shape this app cannot read: try again."
    return LlmError("upstream_unavailable", message, retryable=True)


def _too_long(server: str, exc: CallsTooLong) -> LlmError:
    return LlmError("upstream_unavailable", f"{server} sent {exc}: try again.", retryable=True)


def _parse_json(raw: str | bytes, server: str) -> dict[str, Any]:
    """A JSON object from upstream; at chat pace one per token, so orjson (a third of the time
    `json.loads` takes) reads it, and `json` what orjson refuses but Python's JSON reads (NaN,
    a lone surrogate, an integer past 64 bits)."""
    try:
        data = orjson.loads(raw)
    except ValueError:  # orjson.JSONDecodeError
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            data = None
    if not isinstance(data, dict):
        message = f"{server} sent a reply that is not valid JSON: try again."
        raise LlmError("upstream_unavailable", message, retryable=True)
    return data
