"""The simulator as a plain ASGI application (one process, asyncio pacing)."""

import asyncio
import hashlib
import json
import time
import uuid
from collections import Counter, deque

from .answers import compose_answer, compose_title, is_title_request, long_answer, tokenize
from .attachments import ContentError, Received, question_text, received
from .guard import (
    GUARD_MODELS,
    IMAGE_GUARD_MODELS,
    guard_answer,
    guard_plan,
    is_guard_model,
    prompt_images,
    prompt_text,
    verdicts,
)
from .models import CONTEXT_WINDOW, IMAGE_MODELS, MODELS, count_prompt_tokens
from .plan import (
    STAMP_CLOSE,
    STAMP_OPEN,
    STREAM_FAULTS,
    DirectiveError,
    Plan,
    plan_from,
    strip_directives,
)
from .structured import broken_json, format_problem, json_answer, off_schema
from .wire import NativeWire, OpenAIWire, max_tokens, usage_numbers

ROUTES = (("/compat/v1", OpenAIWire()), ("/v1", NativeWire()))
REJECTED_KEY = "bad-key"
PREFACE = "Let me check that. "  # [sim:call=... preface]: said before the calls
GUARD_MODEL = GUARD_MODELS[0]
RATE_LIMIT_REQUESTS, RATE_LIMIT_TOKENS = 3000, 1_000_000
RECORDED_REQUESTS = 5000  # bounded; the 500-answer benchmark level makes about 1,050 (titles too)
REMEMBERED_FINGERPRINTS = 10_000


class ClientGone(Exception):
    """The client disconnected (or the simulator is closing) while we were answering."""


class Simulator:
    def __init__(
        self,
        *,
        tokens_per_second: float = 40.0,
        first_token_delay: float = 0.3,
        api_key: str | None = None,
        models: tuple[str, ...] = MODELS,
        image_models: tuple[str, ...] = IMAGE_MODELS,
    ):
        if tokens_per_second <= 0 or first_token_delay < 0:
            raise ValueError("tokens_per_second must be positive and first_token_delay >= 0")
        self.tokens_per_second = tokens_per_second
        self.first_token_delay = first_token_delay
        self.api_key = api_key  # None: any Bearer key except "bad-key" is accepted
        # The models it serves (a vLLM or Ollama server's ids, say) and those that see images.
        self.models, self.image_models = models, image_models
        self.requests: deque[dict] = deque(maxlen=RECORDED_REQUESTS)
        # Moderation requests: POST /moderations bodies and chat requests to a Guard model.
        self.moderations: deque[dict] = deque(maxlen=RECORDED_REQUESTS)
        self.calls: Counter[str] = Counter()  # "GET /models": API calls received, any outcome
        self.active_streams = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._attempts: dict[str, int] = {}
        self._watchers: set[asyncio.Future] = set()
        self._minute = (0, 0, 0)  # (minute, requests, tokens) for the rate-limit headers

    def reset(self) -> None:
        """Forget recorded requests and `times=` counters."""
        self.requests.clear()
        self.moderations.clear()
        self.calls.clear()
        self._attempts.clear()

    def close(self) -> None:
        """End every open stream and stall (call on the server's loop)."""
        for watcher in list(self._watchers):
            watcher.cancel()

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            return
        self.loop = self.loop or asyncio.get_running_loop()
        exchange = Exchange(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path.startswith("/_sim/"):
            return await self._control(exchange, path, method)
        for prefix, wire in ROUTES:
            if path.startswith(prefix + "/"):
                return await self._api(exchange, wire, path[len(prefix) :], method)
        await exchange.json(404, {"detail": "Not Found"})

    async def _control(self, exchange: "Exchange", path: str, method: str) -> None:
        if path == "/_sim/requests" and method == "GET":
            return await exchange.json(200, list(self.requests))
        if path == "/_sim/requests" and method == "DELETE":
            self.reset()
            return await exchange.json(200, {"cleared": True})
        if path == "/_sim/stats" and method == "GET":
            return await exchange.json(200, {"active_streams": self.active_streams})
        await exchange.json(404, {"detail": "Not Found"})

    async def _api(self, exchange: "Exchange", wire, route: str, method: str) -> None:
        self.calls[f"{method} {route}"] += 1
        call = Call(self, exchange, wire)
        if route == "/chat/completions" and method == "POST":
            await call.chat()
        elif route == "/models" and method == "GET":
            await call.models()
        elif route.startswith("/models/") and method == "GET":
            await call.model(route[len("/models/") :])
        elif route == "/moderations" and method == "POST":
            await call.moderate()
        else:
            await call.error(404, f"No route for {method} {route}", "not_found")

    def accepts(self, key: str) -> bool:
        return key == self.api_key if self.api_key is not None else key not in ("", REJECTED_KEY)

    def should_fail(self, plan: Plan, fingerprint: str) -> bool:
        """Apply `times=N`: the fault hits the first N identical requests, then they succeed."""
        if plan.times is None:
            return True
        if len(self._attempts) > REMEMBERED_FINGERPRINTS:
            self._attempts.clear()
        self._attempts[fingerprint] = seen = self._attempts.get(fingerprint, 0) + 1
        return seen <= plan.times

    def rate_limit_headers(self, tokens: int, refused: bool = False) -> list[tuple[bytes, bytes]]:
        """Meta's `x-ratelimit-*` headers of a chat reply; `refused`: a 429's, no request left."""
        minute = int(time.time() // 60)
        then, requests, used = self._minute
        if then != minute:
            requests, used = 0, 0
        self._minute = (minute, requests + 1, used + tokens)
        left = 0 if refused else max(0, RATE_LIMIT_REQUESTS - requests - 1)
        values = {
            "x-ratelimit-limit-requests": RATE_LIMIT_REQUESTS,
            "x-ratelimit-remaining-requests": left,
            "x-ratelimit-limit-tokens": RATE_LIMIT_TOKENS,
            "x-ratelimit-remaining-tokens": max(0, RATE_LIMIT_TOKENS - used - tokens),
        }
        return [(name.encode(), str(value).encode()) for name, value in values.items()]

    def watch_disconnect(self, receive) -> asyncio.Future:
        """A future that completes when the client goes away (or the simulator closes)."""
        watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return watcher


async def _wait_for_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class Exchange:
    """One HTTP request/response pair over ASGI."""

    def __init__(self, scope: dict, receive, send):
        self.scope, self.receive, self.send = scope, receive, send
        self.headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        self.request_id = "req-" + uuid.uuid4().hex[:24]

    async def body(self) -> bytes:
        chunks, more = [], True
        while more:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def start(self, status: int, content_type: bytes, extra: list | None = None) -> None:
        headers = [(b"content-type", content_type), (b"x-request-id", self.request_id.encode())]
        await self.send(
            {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
        )

    async def json(self, status: int, data: object, extra: list | None = None) -> None:
        body = json.dumps(data).encode()
        length = [(b"content-length", str(len(body)).encode())]
        await self.start(status, b"application/json", length + (extra or []))
        await self.send({"type": "http.response.body", "body": body})

    async def write(self, chunk: bytes) -> None:
        await self.send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def end(self, chunk: bytes = b"") -> None:
        await self.send({"type": "http.response.body", "body": chunk})


class Call:
    """One API call: authentication, validation, directives, then the reply."""

    def __init__(self, sim: Simulator, exchange: Exchange, wire):
        self.sim, self.exchange, self.wire = sim, exchange, wire

    async def error(self, status: int, detail: str, code: str, extra: list | None = None) -> None:
        await self.exchange.json(status, self.wire.error_body(status, detail, code), extra)

    async def authorized(self) -> bool:
        scheme, _, key = self.exchange.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.sim.accepts(key.strip()):
            return True
        await self.error(401, "Invalid or missing API key.", "invalid_api_key")
        return False

    async def read_json(self) -> dict | None:
        try:
            data = json.loads(await self.exchange.body())
        except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
            data = None
        if isinstance(data, dict):
            return data
        await self.error(400, "The request body must be a JSON object.", "invalid_request")
        return None

    async def models(self) -> None:
        if await self.authorized():
            models = [_model(m) for m in self.sim.models]
            await self.exchange.json(200, {"object": "list", "data": models})

    async def model(self, model_id: str) -> None:
        if not await self.authorized():
            return
        if model_id in self.sim.models:
            return await self.exchange.json(200, _model(model_id))
        await self.error(404, f"Model '{model_id}' not found.", "model_not_found")

    async def moderate(self) -> None:
        body = await self.read_json()
        if body is None or not await self.authorized():
            return
        self.sim.moderations.append(body)
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) for m in messages)
        ):
            return await self.error(400, "messages: send at least one message.", "invalid_request")
        try:
            received(messages)  # an image that does not decode is a 400, as in a chat
            plan = guard_plan(self.exchange.headers.get("x-sim-fault"), messages)
            results = verdicts(self.exchange.headers.get("x-sim-fault"), messages)
        except DirectiveError as exc:
            return await self.error(400, f"Bad simulator directive: {exc}", "invalid_request")
        except ContentError as exc:
            return await self.error(400, str(exc), "invalid_request")
        if await self.guard_trouble(plan, body):
            return
        await self.exchange.json(
            200, {"model": body.get("model") or GUARD_MODEL, "results": results}
        )

    async def guard(self, body: dict) -> None:
        """The Guard model through chat completions: `safe` or `unsafe` and its categories."""
        prompt = prompt_text(body)
        header = self.exchange.headers.get("x-sim-fault")
        try:
            plan = guard_plan(header, [{"role": "user", "content": prompt}])
            answer = guard_answer(header, prompt, prompt_images(body))
        except DirectiveError as exc:
            return await self.error(400, f"Bad simulator directive: {exc}", "invalid_request")
        if await self.guard_trouble(plan, body):
            return
        usage = usage_numbers(count_prompt_tokens(body["messages"]), len(tokenize(answer)))
        reply = self.wire.reply(self.exchange.request_id, body["model"], answer, "stop", usage)
        await self.exchange.json(200, reply)

    async def guard_trouble(self, plan: Plan, body: dict) -> bool:
        """Apply guard_delay, then guard_fault (with times=); True when an error was sent."""
        if plan.guard_delay:
            await asyncio.sleep(plan.guard_delay)
        if plan.guard_fault is None:
            return False
        if not self.sim.should_fail(plan, _fingerprint(self.exchange, body)):
            return False
        detail, code = _injected_detail(plan.guard_fault, body.get("model"))
        await self.error(plan.guard_fault, detail, code)
        return True

    async def chat(self) -> None:
        body = await self.read_json()
        if body is None:
            return
        if is_guard_model(body.get("model")):
            self.sim.moderations.append(body)
            if (
                await self.authorized()
                and await self.valid_guard(body)
                and await self.attachments(body, IMAGE_GUARD_MODELS) is not None
            ):
                await self.guard(body)
            return
        self.sim.requests.append(body)
        if not await self.authorized() or not await self.valid_chat(body):
            return
        attached = await self.attachments(body)
        if attached is None:
            return
        messages = body["messages"]
        plan = await self.plan(body, messages)
        if plan is None or await self.injected_status(plan, body):
            return
        if is_title_request(messages) and plan.title_fault is not None:
            detail, code = _injected_detail(plan.title_fault, body.get("model"))
            return await self.error(
                plan.title_fault, detail, code, self.rate_limited(plan.title_fault)
            )
        prompt_tokens = count_prompt_tokens(messages)
        requested = prompt_tokens + (max_tokens(body, self.wire) or 0)
        if plan.fault == "context_too_long" or requested > CONTEXT_WINDOW:
            detail = "The prompt exceeds the model's maximum context length."
            return await self.error(400, detail, "context_length_exceeded")
        await Reply(self, body, plan, prompt_tokens, attached).send()

    async def valid_guard(self, body: dict) -> bool:
        problem = _chat_problem(body, self.wire)
        if problem is None and body["model"] not in GUARD_MODELS:
            await self.error(404, f"Model '{body['model']}' not found.", "model_not_found")
            return False
        if problem is None and body.get("stream"):
            problem = "stream: the simulated Guard model answers whole replies only."
        if problem:
            await self.error(400, problem, "invalid_request")
            return False
        return True

    async def valid_chat(self, body: dict) -> bool:
        problem = _chat_problem(body, self.wire)
        if problem:
            await self.error(400, problem, "invalid_request")
            return False
        if body["model"] not in self.sim.models:
            await self.error(404, f"Model '{body['model']}' not found.", "model_not_found")
            return False
        return True

    async def attachments(
        self, body: dict, sees_images: tuple[str, ...] | None = None
    ) -> Received | None:
        """The images and documents the request carries (images only for a model that
        `sees_images`); None once a 400 has been sent."""
        try:
            found = received(body["messages"])
        except ContentError as exc:
            await self.error(400, str(exc), "invalid_request")
            return None
        if found.images and body["model"] not in (sees_images or self.sim.image_models):
            detail = f"Model '{body['model']}' does not accept images."
            await self.error(400, detail, "invalid_request")
            return None
        return found

    async def plan(self, body: dict, messages: list) -> Plan | None:
        try:
            return plan_from(self.exchange.headers.get("x-sim-fault"), _last_user_text(messages))
        except DirectiveError as exc:
            await self.error(400, f"Bad simulator directive: {exc}", "invalid_request")
            return None

    async def injected_status(self, plan: Plan, body: dict) -> bool:
        """Answer with the HTTP error the plan asks for; True when we did."""
        status = plan.status or 0
        if not 400 <= status <= 599:
            return False
        if not self.sim.should_fail(plan, _fingerprint(self.exchange, body)):
            return False
        headers = self.rate_limited(status)
        if plan.retry_after is not None:
            headers.append((b"retry-after", f"{plan.retry_after:g}".encode()))
        if plan.retry_after_ms is not None:
            headers.append((b"retry-after-ms", f"{plan.retry_after_ms:g}".encode()))
        detail, code = _injected_detail(status, body.get("model"))
        if plan.echo_auth_after is not None:  # as careless proxies do
            authorization = self.exchange.headers.get("authorization", "")
            detail = "." * plan.echo_auth_after + f" Rejected credentials: {authorization}"
        await self.error(status, detail, code, headers)
        return True

    def rate_limited(self, status: int) -> list[tuple[bytes, bytes]]:
        """A 429 tells the limits as every chat reply does (Meta's rate limits page)."""
        return self.sim.rate_limit_headers(0, refused=True) if status == 429 else []


class Reply:
    """The answer to one chat request, paced token by token when streaming."""

    def __init__(self, call: Call, body: dict, plan: Plan, prompt_tokens: int, attached: Received):
        self.call, self.body, self.plan = call, body, plan
        self.exchange, self.sim = call.exchange, call.sim
        messages = body["messages"]
        question = strip_directives(_last_user_text(messages))
        said = attached.summary()
        response_format = body.get("response_format") or {}
        if is_title_request(messages):
            tokens = tokenize(compose_title(question))
        elif response_format.get("type") in ("json_object", "json_schema"):
            tokens = tokenize(_json_text(response_format, question, messages, plan))
        elif plan.long_tokens is not None:
            tokens = long_answer(question, messages, body, plan.long_tokens, said)
        else:
            tokens = tokenize(compose_answer(question, messages, body, said))
        cap = max_tokens(body, call.wire)
        self.stop = "length" if cap is not None and len(tokens) > cap else "stop"
        self.tokens = tokens[:cap] if cap is not None else tokens
        self.usage = usage_numbers(prompt_tokens, len(self.tokens))
        self.fault = plan.fault if plan.fault in STREAM_FAULTS else None
        if self.fault and not self.sim.should_fail(plan, _fingerprint(self.exchange, body)):
            self.fault = None
        self.reply_id = self.exchange.request_id

    @property
    def tool_calls(self) -> list[dict]:
        """[sim:call=NAME rounds=N]: call those tools when the request offers tools, until N
        turns of tool results have come back since the question. `tool_choice: "none"` asks
        for text: no calls then."""
        messages = self.body["messages"]
        if not self.plan.calls or not (self.body.get("tools") or self.plan.anyway):
            return []
        if self.body.get("tool_choice") == "none" and not self.plan.anyway:
            return []
        if _tool_rounds_since_question(messages) >= self.plan.rounds:
            return []
        long = "x" * 300 if self.plan.long_ids else ""
        return [
            {
                "id": f"call_{long}{index}"
                if self.plan.same_ids
                else f"call_{long}{self.reply_id[-12:]}_{index}",
                "function": {"name": name, "arguments": self.plan.call_args},
            }
            for index, name in enumerate(self.plan.calls)
        ]

    async def send_tool_calls(self, calls: list[dict]) -> None:
        wire, model = self.call.wire, self.body["model"]
        text = PREFACE if self.plan.preface else ""
        # The turn wrote the preface and the calls, not the text answer counted for `self.usage`.
        written = [text] + [f"{c['function']['name']} {c['function']['arguments']}" for c in calls]
        completion_tokens = sum(len(tokenize(piece)) for piece in written)
        usage = usage_numbers(self.usage["prompt_tokens"], completion_tokens)
        limits = self.sim.rate_limit_headers(usage["total_tokens"])
        if not self.body.get("stream"):
            reply = wire.tool_reply(self.reply_id, model, calls, usage, text)
            return await self.exchange.json(200, reply, limits)
        extra = [(b"cache-control", b"no-cache"), *limits]
        await self.exchange.start(200, b"text/event-stream", extra)
        stream = wire.stream(self.reply_id, model)
        include_usage = bool((self.body.get("stream_options") or {}).get("include_usage"))
        ending = stream.end("tool_calls", usage, include_usage)
        pieces = b"".join(stream.tool_pieces(call, index) for index, call in enumerate(calls))
        said = stream.delta(text) if text else b""
        await self.exchange.end(stream.start() + said + pieces + ending)

    async def send(self) -> None:
        calls = self.tool_calls
        if calls:
            return await self.send_tool_calls(calls)
        disconnected = self.sim.watch_disconnect(self.exchange.receive)
        try:
            if self.body.get("stream"):
                await self.stream(disconnected)
            else:
                await self.whole(disconnected)
        except ClientGone:
            pass  # returning with the response open makes the server drop the connection
        finally:
            disconnected.cancel()

    async def whole(self, disconnected: asyncio.Future) -> None:
        await self.wait(self.ttft, disconnected)
        if self.fault in ("stall", "stall_after"):
            await self.wait(None, disconnected)
        if self.fault == "error_after":
            return await self.call.error(500, "Simulated failure.", "simulated_error")
        text = "".join(self.tokens)
        reply = self.call.wire.reply(self.reply_id, self.body["model"], text, self.stop, self.usage)
        if self.fault == "cut":
            body = json.dumps(reply).encode()
            await self.exchange.start(
                200, b"application/json", [(b"content-length", str(len(body)).encode())]
            )
            await self.exchange.write(body[: len(body) // 2])
            raise ClientGone
        await self.exchange.json(
            200, reply, self.sim.rate_limit_headers(self.usage["total_tokens"])
        )

    async def stream(self, disconnected: asyncio.Future) -> None:
        extra = [(b"cache-control", b"no-cache")] + self.sim.rate_limit_headers(
            self.usage["total_tokens"]
        )
        await self.exchange.start(200, b"text/event-stream", extra)
        self.sim.active_streams += 1
        try:
            stream = self.call.wire.stream(self.reply_id, self.body["model"])
            tokens = self.tokens if self.fault is None else self.tokens[: self.plan.after]
            await self.pace(stream, tokens, disconnected)
            if self.fault in ("stall", "stall_after"):
                await self.wait(None, disconnected)
            if self.fault == "cut":
                raise ClientGone
            if self.fault == "error_after":
                return await self.exchange.end(stream.error("Simulated failure mid-answer."))
            include_usage = bool((self.body.get("stream_options") or {}).get("include_usage"))
            await self.exchange.end(stream.end(self.stop, self.usage, include_usage))
        finally:
            self.sim.active_streams -= 1

    async def pace(self, stream, tokens: list[str], disconnected: asyncio.Future) -> None:
        """Send tokens on an absolute schedule; tokens that fell due together go in one chunk."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / (self.plan.tps or self.sim.tokens_per_second)
        start = loop.time() + self.ttft
        sent = 0
        while sent < len(tokens):
            delay = start + sent * interval - loop.time()
            if delay > 0 and sent == 0:  # a first-token delay may be long: a client gone ends it
                await self.wait(delay, disconnected)
            elif delay > 0:
                await asyncio.sleep(delay)
            if disconnected.done():
                raise ClientGone
            due = min(len(tokens), max(sent + 1, int((loop.time() - start) / interval) + 1))
            text = "".join(tokens[sent:due])
            if self.plan.stamp:  # the wall-clock send time, for the lag a client measures
                text = f"{STAMP_OPEN}{time.time():.6f}{STAMP_CLOSE}{text}"
            chunk = stream.delta(text)
            await self.exchange.write(stream.start() + chunk if sent == 0 else chunk)
            sent = due

    @property
    def ttft(self) -> float:
        return self.plan.ttft if self.plan.ttft is not None else self.sim.first_token_delay

    async def wait(self, seconds: float | None, disconnected: asyncio.Future) -> None:
        """Sleep (forever when None), but stop as soon as the client is gone."""
        await asyncio.wait([disconnected], timeout=seconds)
        if disconnected.done():
            raise ClientGone


def _chat_problem(body: dict, wire) -> str | None:
    if not isinstance(body.get("model"), str):
        return "model: a model id is required."
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) for m in messages)
    ):
        return "messages: send at least one message."
    for index, message in enumerate(messages):
        if message.get("role") not in wire.roles:
            return f"messages[{index}].role: must be one of {', '.join(wire.roles)}."
        if message["role"] == "tool" and not isinstance(message.get("tool_call_id"), str):
            return f"messages[{index}].tool_call_id: a tool result names the call it answers."
    if problem := _tool_choice_problem(body.get("tool_choice")):
        return problem
    ranges = {"temperature": wire.max_temperature, "top_p": 1.0}
    for name, high in ranges.items():
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or not 0 <= value <= high):
            return f"{name}: must be between 0 and {high:g}."
    if not isinstance(body.get("stream_options") or {}, dict):
        return "stream_options: must be an object."
    for name in wire.max_tokens_fields:
        cap = body.get(name)
        if cap is not None and (not isinstance(cap, int) or cap < 1):
            return f"{name}: must be a positive integer."
    return format_problem(body.get("response_format"), native=isinstance(wire, NativeWire))


def _tool_choice_problem(choice: object) -> str | None:
    """tool_choice as both SDKs type it: none, auto, required, or one function by name."""
    if choice is None or choice in ("none", "auto", "required"):
        return None
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return None
    return (
        'tool_choice: must be none, auto, required or {"type": "function", "function": {"name"}}.'
    )


def _json_text(response_format: dict, question: str, messages: list, plan: Plan) -> str:
    """A JSON answer (pretty-printed, as models write it), or the broken kind a test asks for."""
    turn = sum(1 for message in messages if message.get("role") == "user")
    value = json_answer(response_format, question, turn)
    if plan.off_schema:
        value = off_schema(value)
    return broken_json(value) if plan.bad_json else json.dumps(value, indent=2)


def _last_user_text(messages: list) -> str:
    """Directives and the restated question come from the newest user message's own words."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return question_text(message)
    return ""


def _injected_detail(status: int, model: str | None) -> tuple[str, str]:
    if status == 404:
        return f"Model '{model}' not found.", "model_not_found"
    if status == 429:
        return "Rate limit exceeded: slow down and retry.", "rate_limit_exceeded"
    if status in (401, 403):
        return "Invalid or missing API key.", "invalid_api_key"
    return f"Simulated failure (HTTP {status}).", "simulated_error"


def _fingerprint(exchange: Exchange, body: dict) -> str:
    """Identical requests (same path, header and body) share one attempt counter."""
    text = json.dumps(
        [exchange.scope["path"], exchange.headers.get("x-sim-fault"), body], sort_keys=True
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _model(model_id: str) -> dict:
    return {"id": model_id, "created": 1735689600, "object": "model", "owned_by": "Meta"}


def _tool_rounds_since_question(messages: list[dict]) -> int:
    """Assistant turns that called tools after the last user message."""
    rounds = 0
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        if message.get("role") == "assistant" and message.get("tool_calls"):
            rounds += 1
    return rounds
