"""The OpenAI-compatible API at /v1/: `GET /v1/models` and `POST /v1/chat/completions`,
for scripts holding a personal API key (`Authorization: Bearer <key>`).

An answer goes through the chat's own planning (`planning.plan_completion`: the team's
prompt, models and ceilings), its admission (the budgets, counting what answers still
streaming may spend; the per-minute limit; the per-person cap on answers at once) and the
team's Llama API client; usage is counted per person, model and key. It is saved as a
conversation only when the request says `X-Save-Conversation: 1`.
The wire format (OpenAI's shapes) is `chatapp.chat.completions`.
"""

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass
from functools import wraps
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from chatapp.chat import generation, planning, tooling

# Database work runs through asgiref's sync_to_async, as in any Django view: Django closes the
# connections when the request ends. (channels' database_sync_to_async closes them around each
# call, which suits a long-lived consumer, not a view inside a request's transaction.)
from chatapp.chat.actions import replies
from chatapp.chat.actions.replies import ReplyResult
from chatapp.chat.completions import (
    CHAT_CODES,
    DONE,
    Completion,
    OpenAIError,
    as_sent,
    from_chat_error,
    invalid,
    parse_body,
    read_request,
)
from chatapp.chat.completions import event as sse_event
from chatapp.chat.errors import ChatError
from chatapp.chat.models import MessageStatus
from chatapp.chat.planning import ReplyPlan
from chatapp.chat.screening import category_order, safety_findings, safety_summary
from chatapp.chat.stop_sequences import cut_at_stops
from chatapp.core.bodies import v1_body_limit
from chatapp.core.dates import first_instant, next_month
from chatapp.llm import (
    Finish,
    LlmValidationError,
    Retrying,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCalls,
    Usage,
    count_message_tokens,
)
from chatapp.llm.errors import server_name
from chatapp.teams import actions as team_actions
from chatapp.teams import api_keys, policy, quota, safety
from chatapp.teams.models import ApiKey, Membership, Team, TeamPolicy

log = logging.getLogger(__name__)

TEAM_HEADER = "X-Team-Id"
TEAM_ID = re.compile(r"[0-9]{1,19}")  # ASCII digits: "²".isdigit(), and int() refuses it
SAVE_HEADER = "X-Save-Conversation"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# The chat page's admins hear of a refused key through the failed answer it keeps; an API
# request keeps none, so the caller is the one to tell them.
KEY_REFUSED = (
    "{server} refused the team's key: ask your team's owners or admins to check it on the"
    " team's provider page."
)


# How often a streaming answer checks that its caller may still ask in the team (in it, the
# key not revoked, the account active): an answer has no row here that a removal could stop.
ACCESS_CHECK_SECONDS = 2.0
# Retry-After on a budget refused only for what answers still streaming hold: they end soon.
HELD_RETRY_SECONDS = 10


@dataclass(frozen=True)
class Caller:
    key: ApiKey
    team: Team


def openai_errors(view: Callable[..., Awaitable[HttpResponseBase]]) -> Callable[..., Any]:
    """Answer OpenAIError in OpenAI's shape, with retry-after on a 429; never a session."""

    @csrf_exempt  # no cookie is read: the bearer key is the only credential
    @wraps(view)
    async def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return await view(request, *args, **kwargs)
        except OpenAIError as error:
            return error_response(error)

    return guarded


def error_response(error: OpenAIError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    if error.allow is not None:
        response["Allow"] = error.allow  # HTTP requires it on a 405
    if error.retryable is False:  # the official SDKs retry any 5xx twice unless told not to
        response["X-Should-Retry"] = "false"
    return response


def only(method: str, request: HttpRequest) -> None:
    if request.method != method:
        raise OpenAIError(
            405, f"Use {method} on this address.", code="method_not_allowed", allow=method
        )


# --- who is asking -----------------------------------------------------------------------


def authenticate(authorization: str, team_header: str | None) -> Caller:
    """The caller's key (its use recorded) and the team the request is for."""
    scheme, _, presented = authorization.partition(" ")
    key = api_keys.key_for(presented.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        raise OpenAIError(
            401,
            "Invalid API key: send a current personal key from your settings page as"
            " 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
        )
    team_actions.touch_api_key(key)
    return Caller(key, team_for(key, team_header))


def team_for(key: ApiKey, team_header: str | None) -> Team:
    """The team named by X-Team-Id, else the key's team, else the person's first team."""
    teams = Team.objects.for_user(key.user)
    if team_header is not None:
        wanted = TEAM_ID.fullmatch(team_header.strip())
        if wanted is None:
            raise invalid(f"{TEAM_HEADER} must be a team id.", TEAM_HEADER)
        team = teams.filter(pk=int(wanted[0])).first()
        if team is None:
            raise OpenAIError(
                404,
                f"No team {team_header} among yours: see the team ids on your teams page.",
                code="team_not_found",
                param=TEAM_HEADER,
            )
        return team
    if (
        key.team_id is not None
        and Membership.objects.filter(team_id=key.team_id, user=key.user).exists()
    ):
        return key.team  # type: ignore[return-value]  # team_id is set
    team = teams.order_by("created_at", "id").first()
    return team or team_actions.ensure_personal_team(key.user)


def access_ended(key: ApiKey, team: Team) -> StreamError | None:
    """Why an answer streaming for this key in this team must stop now, or None."""
    if not ApiKey.objects.active().filter(pk=key.pk, user__is_active=True).exists():
        mine = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True, user__is_active=True)
        if mine.exists():  # neither revoked nor deactivated: the last day it works is over
            message = "Your API key has expired, so the answer stopped here."
        else:
            message = (
                "Your API key was revoked or your account deactivated, so the answer stopped here."
            )
    elif not Membership.objects.filter(team=team, user_id=key.user_id).exists():
        message = "You are no longer a member of this team, so the answer stopped here."
    else:
        return None
    return StreamError("forbidden", message, retryable=False)


async def caller_of(request: HttpRequest) -> Caller:
    return await sync_to_async(authenticate)(
        request.headers.get("Authorization", ""), request.headers.get(TEAM_HEADER)
    )


# --- GET /v1/models ------------------------------------------------------------------------


@openai_errors
async def models(request: HttpRequest) -> HttpResponse:
    only("GET", request)
    caller = await caller_of(request)
    names = await sync_to_async(policy.allowed_models)(caller.team)
    return JsonResponse({"object": "list", "data": [model_object(name) for name in names]})


@openai_errors
async def model(request: HttpRequest, model_name: str) -> HttpResponse:
    """`GET /v1/models/<id>`: one of the team's models, 404 for any other."""
    only("GET", request)
    caller = await caller_of(request)
    if model_name not in await sync_to_async(policy.allowed_models)(caller.team):
        raise OpenAIError(
            404,
            f"The model {model_name} is not one your team may use: see GET /v1/models.",
            code="model_not_found",
            param="model",
        )
    return JsonResponse(model_object(model_name))


# The site offers the models, as vLLM says "vllm": who made one (Meta? Alibaba?) it cannot know.
MODELS_OWNED_BY = "llama-team-chat"


def model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": MODELS_OWNED_BY}


# --- POST /v1/chat/completions -------------------------------------------------------------


@openai_errors
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    only("POST", request)
    caller = await caller_of(request)
    raw = read_body(request)
    if len(raw) > READ_ON_THE_LOOP_BYTES:  # a 40 MB body of images keeps a thread 175 ms
        body, (completion_request, stream, include_usage) = await asyncio.to_thread(_read, raw)
    else:
        body, (completion_request, stream, include_usage) = _read(raw)
    save = request.headers.get(SAVE_HEADER, "").strip().lower() in ("1", "true", "yes")
    if save and completion_request.uses_tools:
        raise invalid(
            "An exchange with tools is not saved as a conversation: send it without"
            f" {SAVE_HEADER}.",
            "tools" if completion_request.tools else "messages",
            code="unsupported_parameter",
        )
    admission = asyncio.ensure_future(sync_to_async(admit)(caller, completion_request, save))
    try:
        plan = await asyncio.shield(admission)
    except OpenAIError as error:
        raise as_sent(error, body) from None
    except asyncio.CancelledError:  # the client went away: the admission's thread goes on
        await release_when_admitted(admission)
        raise
    try:
        answer = await start_answer(plan, caller.key, save, body, completion_request.stop)
    except BaseException:  # refused after all, or the client went away: nothing to count
        generation.release(plan.user.pk)
        if plan.budget_hold is not None:
            await sync_to_async(team_actions.release_hold)(plan.budget_hold)
        raise
    try:
        first = await answer.first_event()
        if not stream:
            return await answer.whole(first)
        if answer.may_withhold:
            first = await answer.held_until_screened(first)
    except BaseException:  # the client went away too (CancelledError): free its place, count
        await answer.abandon()
        raise
    return await AnswerStream.start(answer, answer.chunks(first, include_usage))


async def release_when_admitted(admission: "asyncio.Future[ReplyPlan]") -> None:
    """An admission whose client has gone: once it is through, what it held is let go (it
    would otherwise count against the budgets until it expires, and its place among the
    person's answers at once for good)."""
    with suppress(Exception):
        plan = await admission
        generation.release(plan.user.pk)
        if plan.budget_hold is not None:
            await sync_to_async(team_actions.release_hold)(plan.budget_hold)


# Larger bodies are parsed, and their images decoded, in a worker thread: the event loop
# relays every answer of the process, and would hold them all meanwhile (bench/README.md).
READ_ON_THE_LOOP_BYTES = 256 * 1024


def _read(raw: bytes) -> tuple[dict[str, Any], tuple[Any, bool, bool]]:
    body = parse_body(raw)
    return body, read_request(body)


def read_body(request: HttpRequest) -> bytes:
    limit = v1_body_limit()
    data = request.read(limit + 1)  # not request.body: that stops at Django's smaller limit
    if len(data) > limit:
        message = f"The request body is over {limit / 1024**2:.0f} MB."
        raise OpenAIError(413, message, code="request_too_large")
    return data


async def start_answer(
    plan: ReplyPlan, key: ApiKey, save: bool, body: dict[str, Any], stops: tuple[str, ...]
) -> "Answer":
    """Screen the question of an admitted answer (its place among the user's answers at once
    taken); from the Answer on, its end counts it (and releases what it holds). A refusal
    names the parameters as `body` sent them; the answer ends at the first of `stops`."""
    try:
        events = plan.client.stream_chat(  # sent on the first read
            plan.messages,
            plan.params,
            tools=list(plan.client_tools) or None,
            tool_choice=plan.tool_choice,
        )
    except LlmValidationError as error:
        raise as_sent(invalid(error.message, error.field), body) from None
    if stops:
        events = cut_at_stops(events, stops)
    rules = safety.SafetyRules.of(plan.rules.policy)
    try:
        question = await screen_question(plan, rules, key, save)  # in its place
    except BaseException:  # refused, or the client went away meanwhile
        await events.aclose()
        raise
    return Answer(plan, key, save, events, rules, question)


class AnswerStream(StreamingHttpResponse):
    """A streamed answer that ends with its response, read or not.

    A client gone before the response's first byte leaves the stream unread, and the
    stream's `finally` (which frees the answer's place and counts it) never runs in a
    generator that never started. So the response's close ends the answer, and the stream
    starts here: should the request end before Django closes the response, the collector
    closes the started stream, and its `finally` runs then.
    """

    def __init__(self, answer: "Answer", chunks: AsyncIterator[bytes]):
        super().__init__(chunks, content_type="text/event-stream", headers=STREAM_HEADERS)
        self.answer = answer
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def start(cls, answer: "Answer", chunks: AsyncIterator[bytes]) -> "AnswerStream":
        opening = await anext(chunks)

        async def stream() -> AsyncIterator[bytes]:
            yield opening
            answer.task = asyncio.current_task()  # Django's response task reads on from here
            async for part in chunks:
                yield part

        return cls(answer, stream())

    def close(self) -> None:
        super().close()  # Django calls it from a worker thread
        if not self.loop.is_closed():  # else the process is ending, and its answers with it
            asyncio.run_coroutine_threadsafe(self.answer.abandon(), self.loop)


def admit(caller: Caller, completion_request: Any, save: bool) -> ReplyPlan:
    """Plan the answer under the team's rules, check its budgets (holding what it may spend),
    count it against the per-minute limit and take its place among the person's answers at
    once: refused there, it counts nothing, as on the chat page."""
    key, team = caller.key, caller.team
    taken: list[ReplyPlan] = []

    def take_place(plan: ReplyPlan) -> None:
        """The cap on answers at once, shared with the chat page."""
        try:
            generation.admit(plan)
        except ChatError as error:
            raise from_chat_error(error, retry_after=1) from None
        taken.append(plan)

    try:
        plan = planning.plan_completion(key.user, team, completion_request, save)
        plan = replies.admit_completion(plan, take_place)
    except BaseException as error:
        if taken:  # its place was taken, then the admission failed after all (its commit)
            generation.release(key.user.pk)
        if isinstance(error, ChatError):
            raise from_chat_error(error, retry_after=_retry_after(error, key, team)) from None
        raise
    return plan


def _retry_after(error: ChatError, key: ApiKey, team: Team) -> int | None:
    if error.code == "rate_limited":
        # The cap on answers at once says rate_limited too: then the window has room (1).
        per_minute = TeamPolicy.objects.filter(team=team).values_list(
            "rate_limit_per_minute", flat=True
        )
        return quota.seconds_until_admitted(key.user, team, per_minute.first())
    if error.code == "quota_exceeded":
        team_policy = TeamPolicy.objects.filter(team=team).first()
        if not quota.month_spent(team, team_policy, key.user):
            return HELD_RETRY_SECONDS  # refused for what answers streaming hold, not for use
        resets = first_instant(next_month(timezone.localdate()))
        return max(1, int((resets - timezone.now()).total_seconds()))
    return None


async def screen_question(
    plan: ReplyPlan, rules: safety.SafetyRules, key: ApiKey, save: bool
) -> safety.Screening | None:
    """Llama Guard on the question before it goes upstream, as on the chat page."""
    if not rules.screens("input"):
        return None
    screening = await safety.screen(plan.client, [client_request(plan)], rules, "input")
    safety.count("input", screening, rules)
    if screening.blocked and screening.unscreened:
        raise OpenAIError(
            503, safety.UNSCREENED_QUESTION, kind="api_error", code="safety_unavailable"
        )
    if screening.blocked:
        message = safety.blocked_question_message(screening.categories)
        if save:  # kept with its refusal, as on the chat page: on the team's review queue
            try:
                refusal = refused_question(plan, screening, message)
                await sync_to_async(replies.record_completion)(plan, refusal, key, save)
            except Exception:
                log.exception("Saving a question the safety policy blocked failed")
        raise OpenAIError(400, message, code="safety_blocked", param="messages")
    return screening


def refused_question(plan: ReplyPlan, screening: safety.Screening, message: str) -> ReplyResult:
    """The end of an answer to a question the safety policy blocked: nothing was sent."""
    categories = sorted(screening.categories, key=category_order)
    return ReplyResult(
        message_id=0,
        conversation_id=0,
        status=MessageStatus.ERROR,
        content="",
        seq=0,
        model=plan.params.model,
        error=StreamError("safety_blocked", message, retryable=False),
        safety={"flagged": True, "categories": categories, "stages": ["input"], "unscreened": []},
        findings=(safety.Finding("input", screening.categories, True),),
    )


def client_request(plan: ReplyPlan) -> dict[str, Any]:
    """What Llama Guard judges before an answer: every turn the client wrote (the chat page's
    earlier questions were each screened when asked; a client writes them all), as one message.
    A team's own system prompt is its admins' text, not the client's, and stays out (planning
    tells which, `own_prompt`, whenever questions are screened)."""
    written = [m for m in plan.messages if plan.own_prompt or m["role"] != "system"]
    return safety.as_one_question(written)


def newest_question(plan: ReplyPlan) -> dict[str, Any]:
    return next(m for m in reversed(plan.messages) if m["role"] == "user")


# The answers this process relays and has not counted yet (`end_all` counts them at its stop).
_RELAYING: set["Answer"] = set()


async def end_all() -> None:
    """The process is stopping (SIGTERM): count every answer it relays as a client that went
    away is counted. daphne cancels the requests, but Django runs a view and its response in a
    task of their own, which it cancels only when the request ends: an answer's task would stop
    with the event loop, the tokens its client read never counted."""
    answers = list(_RELAYING)
    tasks = {answer.task for answer in answers if answer.task is not None}
    for task in tasks:
        task.cancel()  # its own ending counts the answer, where it was reading upstream
    if tasks:
        await asyncio.wait(tasks)
    await asyncio.gather(*(answer.abandon() for answer in answers))  # where it was not


class Answer:
    """One answer read from upstream, relayed whole or as chunks, then counted (and saved)."""

    def __init__(
        self,
        plan: ReplyPlan,
        key: ApiKey,
        save: bool,
        events: Any,
        rules: safety.SafetyRules,
        question: safety.Screening | None,
    ):
        self.plan, self.key, self.save = plan, key, save
        self.events: AsyncIterator[StreamEvent] = events
        self.rules, self.input_screening = rules, question
        self.output_screening: safety.Screening | None = None
        self.held: list[StreamEvent] = []  # a held answer's events, relayed once screened
        self.completion = Completion(plan.params.model)
        self.parts: list[str] = []
        self.calls: tuple[ToolCall, ...] = ()  # of the client's own functions, for it to run
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.conversation_id: int | None = None
        self._closed = False
        self._finishing: asyncio.Future[Usage] | None = None  # closing and counting it
        self._access_checked = time.monotonic()
        self.task = asyncio.current_task()  # the view's, reading the answer
        _RELAYING.add(self)

    async def first_event(self) -> StreamEvent:
        """The first text (or the end): a failure before any text is an error response. Tool
        calls are gathered on the way (`calls`) and told at the end."""
        event = await self._next()
        if isinstance(event, StreamError):
            await self.finish(event)
            raise upstream_error(event, server_name(self.plan.client.config))
        return event

    async def held_until_screened(self, first: StreamEvent) -> StreamEvent:
        """Read the whole answer before relaying any of it: the team blocks flagged answers,
        and text a client has received cannot be taken back."""
        event, held = first, [first]
        while isinstance(event, TextDelta):
            event = await self._read()
            held.append(event)
        await self.screen_answer()  # an answer cut off upstream is judged too
        self.held = held[1:]
        return first

    async def screen_answer(self) -> None:
        """Llama Guard on the answer: its text and the calls of the client's functions it
        made, whose names and arguments the client is handed as it is the text."""
        if not self.rules.screens("output") or self.output_screening is not None:
            return
        if self.parts or self.calls:
            answer: dict[str, Any] = {"role": "assistant", "content": "".join(self.parts)}
            if self.calls:
                answer["tool_calls"] = [call_body(call) for call in self.calls]
            self.output_screening = await safety.screen(
                self.plan.client, [newest_question(self.plan), answer], self.rules, "output"
            )
            safety.count("output", self.output_screening, self.rules)

    @property
    def may_withhold(self) -> bool:
        return self.rules.may_withhold_answers

    @property
    def blocked(self) -> bool:
        return self.output_screening is not None and self.output_screening.blocked

    async def _next(self) -> StreamEvent:
        return self.held.pop(0) if self.held else await self._read()

    async def _read(self) -> StreamEvent:
        async for event in self.events:
            if isinstance(event, ToolCalls):
                # Calls the model makes though no tools were offered are dropped, as on the
                # chat page: nothing may run unoffered.
                if self.plan.client_tools:
                    self.calls += event.calls
                continue
            if isinstance(event, Retrying):
                continue
            if isinstance(event, TextDelta):
                if ended := await self._access_ended():
                    return ended
                self.parts.append(event.text)
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
            return event
        return StreamError("interrupted", "The answer stopped before it finished.", True)

    async def _access_ended(self) -> StreamError | None:
        """Every ACCESS_CHECK_SECONDS: whether the caller has lost the right to ask here."""
        now = time.monotonic()
        if now - self._access_checked < ACCESS_CHECK_SECONDS:
            return None
        self._access_checked = now
        return await sync_to_async(access_ended)(self.key, self.plan.team)

    async def whole(self, first: StreamEvent) -> HttpResponse:
        event = first
        while isinstance(event, TextDelta):
            event = await self._next()
        await self.screen_answer()
        usage = await self.finish(event)
        if isinstance(event, StreamError):
            raise upstream_error(event, server_name(self.plan.client.config))
        assert isinstance(event, Finish)
        text, calls = "".join(self.parts), [call_body(call) for call in self.told_calls]
        body = self.completion.whole(text, self.finish_reason(event), usage, self.extra(), calls)
        if self.blocked:
            body["choices"][0]["message"]["content"] = ""
        return JsonResponse(body)

    async def chunks(self, first: StreamEvent, include_usage: bool) -> AsyncIterator[bytes]:
        try:
            yield self.completion.chunk(
                {"role": "assistant", "content": ""}, with_usage=include_usage
            )
            event = first
            while isinstance(event, TextDelta):
                if not self.blocked:
                    yield self.completion.chunk({"content": event.text}, with_usage=include_usage)
                event = await self._next()
            await self.screen_answer()  # held answers were screened before any chunk
            usage = await self.finish(event)
            if isinstance(event, StreamError):
                yield sse_event(upstream_error(event, server_name(self.plan.client.config)).body())
                return
            assert isinstance(event, Finish)
            if self.told_calls:  # whole, in one chunk: they are known only once the turn ends
                calls = [{"index": i, **call_body(c)} for i, c in enumerate(self.told_calls)]
                yield self.completion.chunk({"tool_calls": calls}, with_usage=include_usage)
            reason = self.finish_reason(event)
            yield self.completion.chunk({}, reason, with_usage=include_usage, extra=self.extra())
            if include_usage:
                yield self.completion.usage_chunk(usage, self.extra())
            yield DONE
        finally:  # the client went away (while the answer is judged, too): count what it read
            await self.abandon()

    @property
    def told_calls(self) -> tuple[ToolCall, ...]:
        """The calls the client is given: none of an answer the safety policy withheld."""
        return () if self.blocked else self.calls

    def finish_reason(self, event: Finish) -> str:
        """Why the answer ended, as the client is told. Calls of functions the client did not
        offer were dropped, so an answer that ended on them just stopped; one the token limit cut
        while it wrote its calls ended on `length`, as OpenAI's says (their arguments are
        unfinished)."""
        if self.blocked:
            return "content_filter"
        if self.told_calls and event.finish_reason != "length":
            return "tool_calls"
        return "stop" if event.finish_reason in (None, "tool_calls") else event.finish_reason

    def extra(self) -> dict[str, Any]:
        return {"conversation_id": self.conversation_id} if self.conversation_id else {}

    async def finish(self, event: StreamEvent | None) -> Usage:
        """Close upstream, then count the answer (and save it when asked), once: whoever asks
        first (the answer's end, its client going, the response's close) says how it ended,
        and the others wait for that. Returns its usage. It runs in a task of its own, so a
        client going while it runs (as the upstream closes, say) cancels the wait, never the
        counting half way."""
        if self._finishing is None:
            self._finishing = asyncio.ensure_future(self._finish(event))
        return await asyncio.shield(self._finishing)

    async def _finish(self, event: StreamEvent | None) -> Usage:
        await self.close()
        if self.save:  # one the client left before it was judged (held, say) is judged now
            await self.screen_answer()
        result = self.result(event)
        usage = result.usage or Usage(0, 0)
        try:
            self.conversation_id = await sync_to_async(replies.record_completion)(
                self.plan, result, self.key, self.save
            )
        except Exception:
            log.exception("Recording an API answer's usage failed")
        finally:
            _RELAYING.discard(self)
        return usage

    async def abandon(self) -> None:
        """The request ended before the answer did: count what was read, unless counted (or
        being counted: then once that is done)."""
        await self.finish(None)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            generation.release(self.plan.user.pk)
            async with aclosing(self.events):  # type: ignore[type-var]
                pass

    def result(self, event: StreamEvent | None) -> ReplyResult:
        text = "".join(self.parts)
        ended: dict[str, Any] = {"status": MessageStatus.COMPLETE}
        if isinstance(event, Finish):
            usage = event.usage or self.estimate(text)
            ended.update(
                finish_reason=event.finish_reason,
                usage=usage,
                upstream_request_id=event.request_id,
            )
        elif event is None:  # as on the chat page, the prompt counts once tokens came
            usage = self.estimate(text) if text else Usage(0, 0)
            ended.update(status=MessageStatus.STOPPED, usage=usage)
        else:
            assert isinstance(event, StreamError)
            status = MessageStatus.INTERRUPTED if text else MessageStatus.ERROR
            ended.update(status=status, error=event, usage=self.estimate(text) if text else None)
        if self.blocked:
            ended.update(status=MessageStatus.BLOCKED, error=None)
        if self.rules.active:
            question, answer = self.input_screening, self.output_screening
            ended.update(
                safety=safety_summary(question, answer),
                findings=safety_findings(question, answer),
            )
        first_token_ms = None
        if self.first_token_at is not None:
            first_token_ms = int((self.first_token_at - self.started) * 1000)
        return ReplyResult(
            message_id=0,
            conversation_id=0,
            content=text,
            seq=len(self.parts),
            model=self.plan.params.model,
            duration_ms=int((time.monotonic() - self.started) * 1000),
            time_to_first_token_ms=first_token_ms,
            **ended,
        )

    def estimate(self, text: str) -> Usage:
        """An answer cut short reports no usage: count it by the estimate the history uses,
        its text and the calls it wrote."""
        prompt = self.plan.prompt_tokens
        calls = [{"function": {"name": c.name, "arguments": c.arguments}} for c in self.calls]
        turn = {"role": "assistant", "content": text, "tool_calls": calls}
        answer = count_message_tokens([turn]) if text or calls else 0
        return Usage(prompt_tokens=prompt, completion_tokens=answer)


def call_body(call: ToolCall) -> dict[str, Any]:
    return tooling.call_spec(call.id, call.name, call.arguments)


CONTEXT_TOO_LONG = (
    "The messages are too long for the model's context window: send fewer or shorter"
    " messages, or a lower max_tokens."
)


def _api_advice(message: str) -> str:
    """The chat page's advice to regenerate an answer, as an API caller takes it."""
    return re.sub(
        r"\b([Rr])egenerate to try again\.",
        lambda found: f"{'S' if found[1] == 'R' else 's'}end the request again.",
        message,
    )


def upstream_error(error: StreamError, server: str) -> OpenAIError:
    """The upstream's failure, told as the chat page tells a member; `server` names it."""
    if error.code == "rate_limited":  # when the server said, else a guess
        wait = math.ceil(error.retry_after) if error.retry_after is not None else 5
        return OpenAIError(
            429,
            error.message,
            kind="rate_limit_error",
            code="upstream_rate_limited",
            retry_after=max(1, wait),
        )
    if error.code == "context_too_long":  # the caller's messages: sending them again cannot help
        code = CHAT_CODES[error.code]  # OpenAI's
        return OpenAIError(400, CONTEXT_TOO_LONG, code=code, param="messages")
    if error.code == "forbidden":  # the caller lost access while it streamed
        return OpenAIError(403, error.message, kind="permission_error", code=error.code)
    if error.code == "auth_failed":
        message = KEY_REFUSED.format(server=server)
    else:
        message = _api_advice(error.message)
    status = 504 if error.code == "timeout" else 502
    return OpenAIError(
        status, message, kind="api_error", code=error.code, retryable=error.retryable
    )
