"""Generations: one asyncio task per streaming answer, detached from the socket that asked for it.

A generation reads the upstream stream into a queue as fast as it arrives (the pump), and
relays it to the conversation's sockets (`fanout`: this process's directly, others' through
the channel layer) in coalesced frames numbered by `seq`; the busier the event loop, the more
tokens a frame carries. Its text lives in memory and reaches the database with this process's
other answers about once a second (`checkpoints`), then completely at the end. It listens on a
channel of its own (group `chat.generation.<id>`) for `generation.stop` and for snapshot
requests from sockets that join mid-stream.

When the model asks for tools, the pump runs them (one turn's calls in parallel, those that
need the user's approval once it is given) and streams the model's next turn with their
results, up to `tooling.MAX_TOOL_ROUNDS` turns; the relay tells the sockets about each call
and result (`message.tool_call`, `message.tool_result`) between the text frames.
"""

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chatapp.chat import events, fanout, titles, tooling
from chatapp.chat.actions import replies
from chatapp.chat.actions.replies import Checkpoint, Exchange, ReplyResult
from chatapp.chat.checkpoints import CHECKPOINT_SECONDS, checkpoints
from chatapp.chat.errors import ChatError
from chatapp.chat.event_schema import ConversationEvent
from chatapp.chat.groups import generation_group
from chatapp.chat.models import MessageStatus
from chatapp.chat.planning import ReplyPlan, concurrency_refusal
from chatapp.chat.screening import safety_findings, safety_summary
from chatapp.core import stopping
from chatapp.core.layers import channel_closed, channel_layer
from chatapp.core.metrics import (
    ACTIVE_STREAMS,
    STREAM_DURATION,
    TIME_TO_FIRST_TOKEN,
    TOKENS_RELAYED,
    TOOL_CALLS,
    UPSTREAM_ERRORS,
    UPSTREAM_RETRIES,
)
from chatapp.core.text import storable
from chatapp.llm import (
    Finish,
    Retrying,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCalls,
    Usage,
    count_message_tokens,
    count_tokens_estimate_of_length,
    token_count,
)
from chatapp.teams import safety
from chatapp.teams.safety import Screening
from chatapp.tools.mcp_client import seconds_text

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.005  # deltas arriving this close together travel in one frame
MAX_COALESCE_SECONDS = 0.05  # ... and up to this close while the event loop lags
LAG_WEIGHT = 0.1  # of each new reading in the loop's lag average
LAG_PROBE_SECONDS = 0.01  # the probe's sleep, whose overrun is the loop's lag
HEARTBEAT_SECONDS = 10.0  # a checkpoint even when the model is silent, so the reaper waits
LAYER_RETRY_SECONDS = 0.5  # between tries to read from a channel layer that failed
LISTENER_EXIT_SECONDS = 5.0  # how long a finished answer waits for its listener to stop
_END = object()  # the pump has finished: upstream ended, failed or was cancelled


@dataclass(frozen=True)
class ToolUpdate:
    """A call was made, approved or answered: the relay records it and tells the sockets."""

    call: dict[str, Any]  # the call as stored (see Message.tool_calls)
    result: bool = False  # the call's result is in


# The generations this process is running, by assistant message id.
RUNNING: dict[int, "Generation"] = {}
# Answers this process has counted per user (the chat page's and the API's), until they end.
LIVE_PER_USER: Counter[int] = Counter()
# Answers whose rows this process's database thread has written and whose generation has not
# joined RUNNING yet (the event loop attaches it once the trip is back, while the next start
# may already be in the thread): LIVE_PER_USER counts them, so `admit` must not count their
# rows again as answers streaming elsewhere.
ATTACHING: set[int] = set()
_COUNTING = threading.Lock()  # answers are counted in the database thread and the event loop
# Set by `end_all`: an answer that attaches from then on ends at once, as interrupted.
STOPPING = False
# Answers still starting (`start_generation`), and the ending of rows whose start was cancelled
# (`_end_unattached`): `end_all` waits for them as for the answers running.
_STARTING: set["asyncio.Future[Any]"] = set()


def admit(plan: ReplyPlan) -> None:
    """Count the answer against the user's cap before its upstream request may start.

    API answers that are not saved have no rows: they count only here. Answers streaming in
    other processes count through their rows (`plan.streaming_ids`): a chat.send's are read
    under start_reply's lock, so the cap holds across processes.
    """
    user_id = plan.user.pk
    with _COUNTING:
        elsewhere = sum(1 for i in plan.streaming_ids if i not in RUNNING and i not in ATTACHING)
        if LIVE_PER_USER[user_id] + elsewhere >= settings.CHAT_MAX_CONCURRENT_GENERATIONS:
            raise concurrency_refusal(LIVE_PER_USER[user_id] + elsewhere)
        LIVE_PER_USER[user_id] += 1


class Coalescing:
    """How often a generation sends a frame: at most once a window, so deltas that arrive
    within a window of the last frame travel together in the next one, and a delta that comes
    later than that goes out at once.

    The window is normally COALESCE_SECONDS. When the event loop lags (because every answer
    wants it), each frame costs the loop the same whatever it carries: the window grows to
    about twice the lag, at most MAX_COALESCE_SECONDS, so a busy process sends fewer, larger
    frames instead of falling further behind. One probe per process measures the lag while
    answers run (how far a short sleep overruns), rather than a sleep per frame.
    """

    def __init__(self) -> None:
        self.lag = 0.0  # a moving average of how far sleeps overran (s)
        self._probe: asyncio.Task[None] | None = None

    def window(self) -> float:
        return min(MAX_COALESCE_SECONDS, max(COALESCE_SECONDS, 2 * self.lag))

    def observe(self, asked: float, slept: float) -> None:
        self.lag += (max(0.0, slept - asked) - self.lag) * LAG_WEIGHT

    def measure(self) -> None:
        """Keep the lag probe running on this event loop while answers run here."""
        loop = asyncio.get_running_loop()
        if self._probe is None or self._probe.done() or self._probe.get_loop() is not loop:
            self._probe = loop.create_task(self._measure())

    async def _measure(self) -> None:
        while RUNNING:
            before = time.monotonic()
            await asyncio.sleep(LAG_PROBE_SECONDS)
            self.observe(LAG_PROBE_SECONDS, time.monotonic() - before)


COALESCING = Coalescing()  # one event loop per server process


def release(user_id: int) -> None:
    """An answer counted by `admit` has ended."""
    with _COUNTING:
        LIVE_PER_USER[user_id] -= 1
        if LIVE_PER_USER[user_id] <= 0:
            del LIVE_PER_USER[user_id]


class Generation:
    def __init__(self, plan: ReplyPlan):
        self._tools = {tool.name: tool for tool in plan.tools}
        self._tool_specs = [tool.spec() for tool in plan.tools] or None
        # Checked by `begin_reply` before the rows were written, so this does not fail.
        self._events = plan.client.stream_chat(plan.messages, plan.params, self._tool_specs)
        self._messages = list(plan.messages)  # grows by each tool round
        self._params = plan.params
        self.tool_calls: list[dict[str, Any]] = []  # as relayed: the sockets know these
        self._decisions: dict[str, asyncio.Future[bool]] = {}  # calls awaiting approval
        self._waited: dict[str, float] = {}  # seconds a call waited for its approval
        self._call_ids: set[str] = set()  # of this answer's calls, all rounds
        self._pumped_chars = 0  # of text read from upstream so far, all rounds
        self._turn_began = (0, 0)  # token_count and _pumped_chars when the current turn began
        self._tool_usage = Usage(0, 0)  # the tokens of the turns that called tools
        self._released = False
        self.team, self.user, self.model = plan.team, plan.user, plan.params.model
        self._policy = plan.rules.policy  # as planned: for the budget check at the end
        self._requested_format = plan.requested_format
        self.message_id = 0  # both set by attach, once the rows exist
        self.conversation_id = 0
        self._attached = asyncio.Event()
        self.frames: list[str] = []
        self._half = ""  # the first half of a surrogate pair, held for its second
        self._framed_at = 0.0  # when the last frame went out (time.monotonic)
        self.stop_requested = False
        # The last retry announced, when, and the frames and calls there were then: it is
        # still awaited until text or a call comes after it.
        self._retry: tuple[Retrying, float, int, int] | None = None
        self._stop_error: StreamError | None = None  # why, when not the user's own stop
        self._process_stopping = False  # set by `end_all`
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.token_count = 0
        self._queue = _Inbox()
        self._announced = asyncio.Event()
        self._checkpointed_seq = 0
        self._checkpointed_at = self.started
        self._heartbeat_due = False
        self._broadcast_failing = False
        self._layer = channel_layer()
        self._followers = fanout.followers()
        self._client = plan.client
        self._safety = safety.SafetyRules.of(plan.rules.policy)
        self._question = _question(plan.messages)
        self._screened_question = _screened_question(plan, self._question)
        self._names_conversation = False  # set by attach
        self._answers_unnamed = plan.names_conversation
        self._temporary = plan.conversation.temporary
        self._first_words = plan.conversation.title
        self.input_screening: Screening | None = None
        self.output_screening: Screening | None = None  # the latest verdict on the answer
        self.blocked = False  # the answer was stopped by the output screening
        self._screen_task: asyncio.Task[None] | None = None
        self._screens_output = self._safety.screens("output")
        self._screened_at = self.started
        self._pump_task = asyncio.create_task(self._pump())
        self._task: asyncio.Task[None] | None = None

    @property
    def seq(self) -> int:
        return len(self.frames)

    @property
    def content(self) -> str:
        return "".join(self.frames)

    async def attach(self, exchange: Exchange) -> None:
        """The rows exist: listen for stop and snapshot requests; relay once announced."""
        self.message_id = exchange.assistant_id
        self.conversation_id = exchange.conversation_id
        self._attached.set()
        # A new saved conversation is named by the model once an answer to its first question
        # is complete (a regenerated one, or one to an edit of it, when the first was not).
        self._names_conversation = (
            (exchange.created or self._answers_unnamed)
            and not self._temporary
            and settings.LLAMA_GENERATE_TITLES
        )
        channel = self._channel = await self._layer.new_channel()
        await self._layer.group_add(generation_group(self.message_id), channel)
        RUNNING[self.message_id] = self
        with _COUNTING:
            ATTACHING.discard(self.message_id)
        COALESCING.measure()
        checkpoints().add(self)
        self._task = asyncio.create_task(self._run(channel))
        if STOPPING:  # started as the process stops, after `end_all` interrupted the others
            self.interrupt()

    async def rejoin(self) -> None:
        """Join the generation's group again, after the channel layer forgot it (Redis restart)."""
        try:
            await self._layer.group_add(generation_group(self.message_id), self._channel)
        except Exception:
            log.exception("Rejoining the group of answer %s failed", self.message_id)

    def announced(self) -> None:
        """message.created has gone out, so deltas may follow."""
        self._announced.set()

    def abandon(self) -> None:
        """The answer could not start after all: drop the upstream request."""
        self._pump_task.cancel()
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            release(self.user.pk)

    def stop(self, error: StreamError | None = None) -> None:
        self.stop_requested = True
        self._stop_error = error
        self._pump_task.cancel()  # closes the upstream response and cancels running tools

    def interrupt(self) -> None:
        """This process is stopping: end the answer here as interrupted, its text saved."""
        self._process_stopping = True
        self._pump_task.cancel()

    def decide(self, call_id: str, approve: bool) -> None:
        """The user approved or denied a call waiting for them (from any process)."""
        waiter = self._decisions.get(call_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(approve)

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _pump(self) -> None:
        try:
            if self._safety.screens("input"):
                # Before anything goes upstream: a blocked question costs no chat tokens.
                self.input_screening = await safety.screen(
                    self._client, [self._screened_question], self._safety, "input"
                )
                # Recorded before the question goes upstream (or is refused), its verdict with
                # it: a process that dies before this leaves it marked unchecked
                # (replies.mark_interrupted), one that dies after loses nothing of the verdict.
                await self._attached.wait()
                await database_sync_to_async(replies.question_screened)(
                    self.message_id, self.input_screening, self.team, self.user
                )
                if self.input_screening.blocked:
                    await self._events.aclose()
                    return
            deadline = time.monotonic() + tooling.TOOL_LOOP_SECONDS
            events, offered, rounds = self._events, self._tool_specs, 0
            while (calls := await self._pump_turn(events, offered is not None)) is not None:
                rounds += 1
                # A person's time to approve is not the tools' time: the budget moves with it.
                deadline += await self._run_tools(calls, rounds, deadline)
                more = rounds < tooling.MAX_TOOL_ROUNDS and time.monotonic() < deadline
                # Past the cap or the time budget the model gets no tools: it must answer.
                offered = self._tool_specs if more else None
                if refusal := await self._admit_next_turn(offered):
                    self._queue.put_nowait(refusal)
                    return
                events = self._client.stream_chat(self._messages, self._params, offered)
        except asyncio.CancelledError:
            pass  # stopped or abandoned; aclosing has closed the upstream response
        except Exception:
            log.exception("Reading the Llama API stream failed")
            message = "Something went wrong while answering: try again."
            self._queue.put_nowait(StreamError("internal_error", message, retryable=True))
        finally:
            self._queue.put_nowait(_END)

    async def _admit_next_turn(self, offered: list[dict[str, Any]] | None) -> StreamError | None:
        """The team's budgets checked again before the model reads the tools' results (and
        the tools `offered` it again)."""
        self._turn_began = (self.token_count, self._pumped_chars)  # its tokens are counted
        await self._attached.wait()  # its row holds the reservation: the first turn may be quicker
        prompt = count_message_tokens(self._messages) + tooling.described_tokens(offered)
        reserve = prompt + (self._params.max_tokens or 0)
        try:
            await database_sync_to_async(replies.admit_next_turn)(
                self.message_id, self.team, self.user, self._tool_usage, reserve
            )
        except ChatError as error:
            message = (
                f"{error.message} The answer stopped before the model read its tools' results."
            )
            return StreamError(error.code, message, retryable=False)
        return None

    async def _pump_turn(
        self, stream: AsyncGenerator[StreamEvent, None], offering: bool
    ) -> tuple[ToolCall, ...] | None:
        """Queue one model turn; returns its tool calls if it asked for some (and ended well).

        Calls of a turn that was offered no tools are dropped: nothing may run unoffered; so
        are those past MAX_TURN_CALLS, which would each hold a task, a row update and a frame."""
        calls: tuple[ToolCall, ...] = ()
        dropped: tuple[ToolCall, ...] = ()  # asked for though no tools were offered
        text: list[str] = []
        self._turn_began = (self.token_count, self._pumped_chars)
        async with aclosing(stream) as turn:
            async for event in turn:
                if isinstance(event, TextDelta):
                    self._count_token()
                    text.append(event.text)
                    self._pumped_chars += len(event.text)
                elif isinstance(event, ToolCalls):
                    turn_calls = event.calls[: tooling.MAX_TURN_CALLS]
                    if offering:
                        calls = self._with_unique_ids(turn_calls)
                    else:
                        dropped = turn_calls
                    continue
                elif isinstance(event, Finish):
                    if calls or dropped:
                        spent = event.usage or self._cut_turn_usage(calls or dropped)
                        self._tool_usage = _added(self._tool_usage, spent)
                        # Counted: an answer stopped while its calls wait or run adds nothing
                        # more of this turn (its text before the calls is not a cut turn).
                        self._turn_began = (self.token_count, self._pumped_chars)
                    if dropped:
                        # Its text led up to calls that will not run: no reply, and it says so.
                        self._queue.put_nowait(self._no_more_tools())
                        return None
                    if calls:
                        self._messages.append(_calls_message(storable("".join(text)), calls))
                        return calls
                    if event.usage is None and (estimate := self._cut_turn_usage()).prompt_tokens:
                        # No usage came (a server that sends none, or a drop after the finish
                        # reason): the turn counts by estimate, as a cut one does.
                        event = replace(event, usage=estimate)
                    if self._tool_usage.prompt_tokens or self._tool_usage.completion_tokens:
                        event = replace(event, usage=_added(self._tool_usage, event.usage))
                self._queue.put_nowait(event)
        return None

    def _no_more_tools(self) -> StreamError:
        """The end of an answer whose model asked for tools in a turn offered none."""
        if self._tool_specs is None:
            message = (
                "The model asked for tools, but this conversation offers none, so its answer"
                " stopped there: regenerate to try again."
            )
        else:
            turns = tooling.MAX_TOOL_ROUNDS
            message = (
                "The model kept asking for tools after the"
                f" {turns} turn{'s' if turns != 1 else ''} of tool calls an answer may take,"
                " so its answer stopped there: regenerate, or ask for less at once."
            )
        return StreamError("tool_rounds_exhausted", message, retryable=True)

    def _with_unique_ids(self, calls: tuple[ToolCall, ...]) -> tuple[ToolCall, ...]:
        """The calls, each with an id no other call of this answer has: some servers number
        calls per turn (call_0 every turn), and calls are kept and answered by id (cut to
        CALL_ID_CHARS). Their text is made storable: they are saved, and sent upstream again
        with their results."""
        unique = []
        for call in calls:
            first = storable(call.id)[: tooling.CALL_ID_CHARS]
            call_id, n = first, 1
            while call_id in self._call_ids:
                call_id, n = f"{first}_{n}", n + 1
            self._call_ids.add(call_id)
            name, arguments = storable(call.name), storable(call.arguments)
            unique.append(replace(call, id=call_id, name=name, arguments=arguments))
        return tuple(unique)

    async def _run_tools(self, calls: tuple[ToolCall, ...], round_: int, deadline: float) -> float:
        """Run one turn's calls together; their results go upstream in the calls' order.
        Returns the longest wait for an approval among them."""
        records: list[dict[str, Any]] = [
            {
                "id": call.id,
                "name": call.name,
                "arguments": call.arguments,
                "status": "running",
                "content": None,
                "is_error": False,
                "elapsed": None,
                "round": round_,
                "offset": self._pumped_chars,
            }
            for call in calls
        ]
        outcomes = await asyncio.gather(*(self._call(record, deadline) for record in records))
        for call, outcome in zip(calls, outcomes, strict=True):
            self._messages.append(tooling.result_message(call.id, outcome.content))
        return max((self._waited.pop(record["id"], 0.0) for record in records), default=0.0)

    async def _call(self, record: dict[str, Any], deadline: float) -> tooling.Outcome:
        started = time.monotonic()
        tool = self._tools.get(record["name"])
        arguments = tooling.parse_arguments(record["arguments"])
        # The tool's settings as they are now: an admin may have set "ask first" meanwhile.
        if (
            tool is not None
            and arguments is not None
            and (tool.needs_approval or await tooling.TOOLBOX.needs_approval(tool))
        ):
            waiter = self._decisions[record["id"]] = asyncio.get_running_loop().create_future()
            self._queue.put_nowait(ToolUpdate({**record, "status": "awaiting_approval"}))
            try:
                approved = await asyncio.wait_for(waiter, tooling.APPROVAL_SECONDS)
            except TimeoutError:
                approved = False
            finally:
                self._decisions.pop(record["id"], None)
            self._waited[record["id"]] = time.monotonic() - started
            started = time.monotonic()
            if not approved:
                outcome = tooling.Outcome(tooling.DECLINED, True, 0.0)
                return self._answered(record, outcome)
        self._queue.put_nowait(ToolUpdate(dict(record)))
        if tool is None:
            message = f"There is no tool named {record['name']!r}: use one of the tools offered."
            return self._answered(record, tooling.Outcome(message, True, 0.0))
        if arguments is None:
            message = "The arguments are not a JSON object: call the tool again with one."
            return self._answered(record, tooling.Outcome(message, True, 0.0))
        remaining = deadline + self._waited.get(record["id"], 0.0) - time.monotonic()
        if remaining <= 0:  # the other calls of the answer spent its time for tools
            message = "The answer's time for tools ran out before this call could run."
            return self._answered(record, tooling.Outcome(message, True, 0.0))
        limit = min(remaining, tool.timeout)
        try:
            # The toolbox keeps the limit itself: cut here too, an answer that came just in
            # time would be lost while the call ended its session.
            async with asyncio.timeout(limit + tooling.CALL_GRACE_SECONDS):
                result = await tooling.TOOLBOX.call_tool(tool, arguments, limit)
            outcome = tooling.Outcome(result.content, result.is_error, result.elapsed)
        except TimeoutError:
            message = f"The tool did not answer within {seconds_text(limit)} seconds."
            outcome = tooling.Outcome(message, True, time.monotonic() - started)
        except Exception:
            log.exception("Calling tool %s failed", record["name"])
            outcome = tooling.Outcome("The tool failed.", True, time.monotonic() - started)
        return self._answered(record, outcome)

    def _answered(self, record: dict[str, Any], outcome: tooling.Outcome) -> tooling.Outcome:
        declined = outcome.is_error and outcome.content == tooling.DECLINED
        TOOL_CALLS.labels("declined" if declined else "error" if outcome.is_error else "ok").inc()
        content = tooling.capped(outcome.content)
        done = {
            **record,
            "status": "done",
            "content": content,
            "is_error": outcome.is_error,
            "elapsed": round(outcome.elapsed, 3),
        }
        self._queue.put_nowait(ToolUpdate(done, result=True))
        return tooling.Outcome(content, outcome.is_error, outcome.elapsed)

    def _count_token(self) -> None:
        self.token_count += 1
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
            TIME_TO_FIRST_TOKEN.observe(self.first_token_at - self.started)

    async def _run(self, channel: str) -> None:
        listener = asyncio.create_task(self._listen(channel))
        missed = asyncio.create_task(self._stop_if_missed())
        ACTIVE_STREAMS.inc()
        result: ReplyResult | None = None
        tracked = False  # by the followers' `elsewhere`, for whether deltas go on the layer
        try:
            await self._announced.wait()
            if fanout.spans_processes():
                tracked = True
                await self._followers.elsewhere.start(self.conversation_id)
            try:
                result = await self._relay()
                result = await self._screen_end(result)
            except Exception:
                log.exception("Relaying answer %s failed", self.message_id)
                message = "Something went wrong while answering: regenerate to try again."
                result = self._result(StreamError("internal_error", message, retryable=True))
            await checkpoints().remove(self)  # no checkpoint may land after the final write
            await self._end_unfinished_calls(result)
            self._observe(result)  # counted before message.done reaches this process's sockets
            try:
                await replies.finish_reply(result, self.team, self.user, self._policy)
            except Exception:  # the reaper marks it interrupted once the heartbeat is stale
                log.exception("Saving the end of answer %s failed", self.message_id)
        finally:
            ACTIVE_STREAMS.dec()
            if tracked:
                self._followers.elsewhere.end(self.conversation_id)
            checkpoints().discard(self)
            missed.cancel()
            self._pump_task.cancel()
            if self._screen_task is not None:
                self._screen_task.cancel()
            RUNNING.pop(self.message_id, None)
            self._release()
            await self._stop_listening(listener, channel)
        if result is not None and result.status == MessageStatus.COMPLETE:
            await self._name_conversation(result)

    async def _stop_if_missed(self) -> None:
        """Stop as a stop sent before the generation joined its group would have."""
        try:
            reason = await database_sync_to_async(replies.reason_to_stop)(self.message_id)
        except Exception:  # the database is down: the answer's end will say so
            log.exception("Checking whether answer %s should stop failed", self.message_id)
            return
        if reason is not None:
            self.stop(_left_team() if reason == replies.LEFT_TEAM else None)

    async def _name_conversation(self, result: ReplyResult) -> None:
        """After the answer has ended and released its slot: it no longer counts as streaming."""
        if not self._names_conversation:
            return
        job = titles.TitleJob(
            conversation_id=self.conversation_id,
            first_words=self._first_words,
            question=titles.question_text(self._question),
            answer=result.content,
            client=self._client,
            model=result.model or self.model,
            team=self.team,
            user=self.user,
            policy=self._policy,
        )
        try:
            await titles.name_conversation(job)
        except Exception:
            log.exception("Naming conversation %s failed", self.conversation_id)

    async def _end_unfinished_calls(self, result: ReplyResult) -> None:
        """Calls the end of the answer cut short get their (error) result on the page."""
        for call in result.tool_calls:
            if call not in self.tool_calls:
                TOOL_CALLS.labels("stopped").inc()
                await self._broadcast(
                    events.message_tool_result(self.conversation_id, self.message_id, call)
                )

    async def _stop_listening(self, listener: asyncio.Task[None], channel: str) -> None:
        """End the listener by a message, not by cancelling it.

        With channels-redis, all channels of a process share one blocking pop; cancelling the
        task that is in it can drop a message it was handed for another channel (such as the
        message.done just broadcast to the sockets).
        """
        with suppress(Exception):
            await self._layer.group_discard(generation_group(self.message_id), channel)
            await self._layer.send(channel, {"type": "generation.exit"})
            await asyncio.wait_for(asyncio.shield(listener), LISTENER_EXIT_SECONDS)
        listener.cancel()
        with suppress(asyncio.CancelledError):
            await listener
        channel_closed(channel)

    async def _listen(self, channel: str) -> None:
        while True:
            try:
                event = await self._layer.receive(channel)
            except Exception:  # the channel layer is down: the answer goes on, retry later
                await asyncio.sleep(LAYER_RETRY_SECONDS)
                continue
            kind = event.get("type")
            if kind == "generation.exit":
                return
            if kind == "generation.stop":
                self.stop(_left_team() if event.get("reason") == replies.LEFT_TEAM else None)
            elif kind == "generation.tool_decision":
                self.decide(str(event.get("call_id")), event.get("approve") is True)
            elif kind == "generation.snapshot_request":
                with suppress(Exception):  # the asking socket falls back to the stored row
                    reply_channel = event["reply_channel"]
                    self._followers.elsewhere.follower_arrived(self.conversation_id, reply_channel)
                    await self._layer.send(reply_channel, self._snapshot())

    def _snapshot(self) -> dict[str, Any]:
        """The text relayed so far: deltas 1..seq joined."""
        return {
            "type": "generation.snapshot",
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "content": "" if self.blocked else self.content,  # withheld once blocked
            "seq": self.seq,
            "tool_calls": list(self.tool_calls),
            "retrying": self._retry_left(),
        }

    def _retry_left(self) -> dict[str, Any] | None:
        """The retry still awaited, its delay what is left of the wait (for a reloaded page)."""
        if self._retry is None:
            return None
        retry, announced_at, seq, calls = self._retry
        if (seq, calls) != (self.seq, len(self.tool_calls)):
            return None  # text or a call came since: the retry went through
        left = max(0.0, retry.delay - (time.monotonic() - announced_at))
        return {"attempt": retry.attempt, "delay": left, "code": retry.code}

    async def _relay(self) -> ReplyResult:
        event: StreamEvent | object | None = None
        while True:
            if event is None:
                event = await self._queue.get()
            if isinstance(event, TextDelta):
                event = await self._relay_text(event.text)
                continue
            if self._half:  # the first half of a pair whose second half never came
                half, self._half = self._half, ""
                await self._emit(storable(half))
            if isinstance(event, Retrying):
                await self._announce_retry(event)
                event = None
            elif isinstance(event, ToolUpdate):
                await self._relay_tool(event)
                event = None
            else:
                return self._result(event)

    async def _relay_tool(self, update: ToolUpdate) -> None:
        """Record the call, save the answer's calls (once per call, not per token), tell."""
        call = update.call
        index = next((i for i, c in enumerate(self.tool_calls) if c["id"] == call["id"]), None)
        if index is None:
            self.tool_calls.append(call)
        else:
            self.tool_calls[index] = call
        self._heartbeat_due = True  # a tool may take long: keep the reapers off meanwhile
        try:
            await replies.save_tool_calls(self.message_id, list(self.tool_calls))
        except Exception:  # the final write saves them again
            log.exception("Saving the tool calls of answer %s failed", self.message_id)
        if update.result:
            event: ConversationEvent = events.message_tool_result(
                self.conversation_id, self.message_id, call
            )
        else:
            event = events.message_tool_call(self.conversation_id, self.message_id, call)
        await self._broadcast(event)

    async def _relay_text(self, text: str) -> StreamEvent | object | None:
        """Send one frame with this delta and those close behind it; return what ended it."""
        parts = [text]
        if self.frames:  # the first token goes out at once; then one frame a window at most
            wait = self._framed_at + COALESCING.window() - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        following: StreamEvent | object | None = None
        while following is None and not self._queue.empty():
            event = self._queue.get_nowait()
            if isinstance(event, TextDelta):
                parts.append(event.text)
            else:
                following = event
        frame, self._half = self._half + "".join(parts), ""
        if following is None and "\ud800" <= frame[-1:] <= "\udbff":
            # The first half of a surrogate pair (an emoji the model streamed in two chunks)
            # waits for the second: frames, the text and snapshots hold whole characters, which
            # the channel layer and the database can carry.
            frame, self._half = frame[:-1], frame[-1]
        frame = storable(frame)
        if frame:
            await self._emit(frame)
            self._framed_at = time.monotonic()
        return following

    async def _emit(self, text: str) -> None:
        if self.blocked:
            return  # tokens queued before the block stopped the stream are never shown
        self.frames.append(text)
        await self._broadcast(
            events.message_delta(self.conversation_id, self.message_id, self.seq, text)
        )
        if self._screens_output and time.monotonic() - self._screened_at >= CHECKPOINT_SECONDS:
            self._screened_at = time.monotonic()
            self._screen_so_far()

    # --- output screening ------------------------------------------------------------------

    def _screen_so_far(self) -> None:
        """Screen the answer so far in the background; tokens keep flowing meanwhile."""
        if not self._safety.screens("output") or self.blocked:
            return
        if self._screen_task is not None and not self._screen_task.done():
            return  # the previous check still runs: the next one takes the newer text
        self._screen_task = asyncio.create_task(self._screen_answer(self.content))

    async def _screen_answer(self, text: str) -> None:
        screening = await self._screen_output(text)
        if screening.unscreened:
            return  # a check mid-answer that failed: the check at the end decides
        self.output_screening = screening
        if screening.blocked:
            self.blocked = True
            self._pump_task.cancel()  # closes the upstream response at once

    async def _screen_output(self, text: str) -> Screening:
        answer = {"role": "assistant", "content": text}
        return await safety.screen(self._client, [self._question, answer], self._safety, "output")

    async def _screen_end(self, result: ReplyResult) -> ReplyResult:
        """The last word on the whole text shown, then the answer's status and safety."""
        if self._safety.screens("output") and result.content and not self.blocked:
            if self._screen_task is not None:
                self._screen_task.cancel()
            final = await self._screen_output(result.content)
            earlier = self.output_screening
            if final.unscreened and earlier is not None and earlier.flagged:
                # What a check mid-answer flagged stands: it is for the team's reviewers.
                final = replace(earlier, unscreened=True, blocked=final.blocked)
            self.output_screening = final
            self.blocked = final.blocked
        if not self._safety.active:
            return result
        question, answer = self.input_screening, self.output_screening
        changes: dict[str, Any] = {
            "safety": safety_summary(question, answer),
            "findings": safety_findings(question, answer),
        }
        if self.blocked:
            changes.update(status=MessageStatus.BLOCKED, error=None)
        return replace(result, **changes)

    async def _announce_retry(self, event: Retrying) -> None:
        UPSTREAM_RETRIES.inc()
        self._heartbeat_due = True  # alive, though quiet: keep other processes' reapers off it
        self._retry = (event, time.monotonic(), self.seq, len(self.tool_calls))
        await self._broadcast(
            events.message_retrying(
                self.conversation_id, self.message_id, event.attempt, event.delay, event.code
            )
        )

    async def _broadcast(self, event: ConversationEvent) -> None:
        """Send to the conversation's sockets; a channel layer failure does not end the answer.

        The text stays in memory and in checkpoints; sockets that missed frames are closed by
        `layer_watch` once the layer is back, and resubscribe.
        """
        delivered = await replies.broadcast(event, quiet=True, followers=self._followers)
        if not delivered and not self._broadcast_failing:  # once per outage, not per token
            log.warning("Answer %s cannot reach its sockets: channel layer down", self.message_id)
        self._broadcast_failing = not delivered

    def checkpoint_due(self, now: float) -> Checkpoint | None:
        """The checkpoint to write now, if the text moved on or the heartbeat is due."""
        moved = self.seq != self._checkpointed_seq
        stale = now - self._checkpointed_at >= HEARTBEAT_SECONDS - CHECKPOINT_SECONDS
        if not (moved or stale or self._heartbeat_due):
            return None
        self._checkpointed_seq, self._checkpointed_at = self.seq, now
        self._heartbeat_due = False
        return Checkpoint(self.message_id, self.content, self.seq)

    def _result(self, event: object) -> ReplyResult:
        ended: dict[str, Any] = {"status": MessageStatus.COMPLETE}
        if self.input_screening is not None and self.input_screening.blocked:
            ended.update(status=MessageStatus.ERROR, error=_refusal(self.input_screening))
        elif self._safety.screens("input") and self.input_screening is None:
            # Ended before the question's verdict, so before it went upstream: it stays out
            # of later requests (only the newest question is screened) until regenerated.
            # A stop says stopped; the server stopping, interrupted, as any answer it cuts.
            status = (
                MessageStatus.STOPPED
                if self.stop_requested
                else MessageStatus.INTERRUPTED
                if stopping.is_stopping()
                else MessageStatus.ERROR
            )
            ended.update(status=status, error=self._stop_error or _unchecked())
        elif self.blocked:
            usage = _added(self._tool_usage, self._cut_turn_usage())
            ended.update(status=MessageStatus.BLOCKED, usage=usage)
        elif isinstance(event, Finish):
            ended.update(
                finish_reason=event.finish_reason,
                usage=event.usage,
                upstream_request_id=event.request_id,
            )
        elif event is _END and self.stop_requested:
            usage = _added(self._tool_usage, self._cut_turn_usage())
            ended.update(status=MessageStatus.STOPPED, usage=usage, error=self._stop_error)
        else:
            if isinstance(event, StreamError):
                error = event
            else:
                error = _server_stopped() if self._process_stopping else _ended_early()
            # Text or tool calls the page showed stay, marked cut short, not failed (deleted
            # by a retry).
            shown = self.frames or self.tool_calls
            status = MessageStatus.INTERRUPTED if shown else MessageStatus.ERROR
            ended.update(error=error, upstream_request_id=error.request_id, status=status)
            # Tokens already spent count however the answer ended (estimated, like a stop).
            spent = _added(self._tool_usage, self._cut_turn_usage())
            if spent.prompt_tokens or spent.completion_tokens:
                ended.update(usage=spent)
        first_token_ms = None
        if self.first_token_at is not None:
            first_token_ms = int((self.first_token_at - self.started) * 1000)
        return ReplyResult(
            message_id=self.message_id,
            conversation_id=self.conversation_id,
            tool_calls=tuple(tooling.unfinished(call) for call in self.tool_calls),
            content=self.content,
            seq=self.seq,
            model=self.model,
            duration_ms=int((time.monotonic() - self.started) * 1000),
            time_to_first_token_ms=first_token_ms,
            requested_format=self._requested_format,
            **ended,
        )

    def _cut_turn_usage(self, calls: tuple[ToolCall, ...] = ()) -> Usage:
        """A cut stream reports no usage: the tokens it sent and, once it sent some, its
        prompt by the estimate the history uses (the provider bills it, long or not). A
        chunk may carry several tokens: its text counts at least as the history estimates,
        and the `calls` it wrote (their names and arguments) with it."""
        tokens_before, chars_before = self._turn_began
        deltas = self.token_count - tokens_before
        called = sum(len(call.name) + len(call.arguments) for call in calls)
        if not deltas and not called:
            return Usage(0, 0)
        by_length = count_tokens_estimate_of_length(self._pumped_chars - chars_before + called)
        return Usage(count_message_tokens(self._messages), max(deltas, by_length))

    def _observe(self, result: ReplyResult) -> None:
        for stage, screening in (
            ("input", self.input_screening),
            ("output", self.output_screening),
        ):
            if screening is not None:
                safety.count(stage, screening, self._safety)  # type: ignore[arg-type]
        STREAM_DURATION.observe(time.monotonic() - self.started)
        TOKENS_RELAYED.inc(result.usage.completion_tokens if result.usage else self.token_count)
        if result.error is not None:
            UPSTREAM_ERRORS.labels(result.error.code).inc()


def _question(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The newest question, the message input screening judges (and output screening's context)."""
    return next((m for m in reversed(messages) if m["role"] == "user"), messages[-1])


def _screened_question(plan: ReplyPlan, question: dict[str, Any]) -> dict[str, Any]:
    """What input screening judges: the question, after a system prompt the member wrote."""
    system = [m for m in plan.messages if m["role"] == "system"]
    if not plan.own_prompt or not system:
        return question
    return safety.as_one_question([*system, question])


def _added(total: Usage, more: Usage | None) -> Usage:
    """The sum, in the range a row stores (each turn's count is: not always their sum)."""
    if more is None:
        return total
    return Usage(
        token_count(total.prompt_tokens + more.prompt_tokens),
        token_count(total.completion_tokens + more.completion_tokens),
    )


def _calls_message(text: str, calls: tuple[ToolCall, ...]) -> dict[str, Any]:
    """The model's turn that asked for tools, as it goes back upstream."""
    specs = [tooling.call_spec(call.id, call.name, call.arguments) for call in calls]
    return {"role": "assistant", "content": text, "tool_calls": specs}


def _refusal(screening: Screening) -> StreamError:
    """The error a question the input screening stopped ends with."""
    if screening.unscreened:
        return StreamError(
            safety.UNSCREENED_QUESTION_CODE, safety.UNSCREENED_QUESTION, retryable=True
        )
    message = safety.blocked_question_message(screening.categories)
    return StreamError("safety_blocked", message, retryable=False)


def _unchecked() -> StreamError:
    return StreamError(safety.UNCHECKED_QUESTION_CODE, safety.UNCHECKED_QUESTION, retryable=True)


def _ended_early() -> StreamError:
    message = "The answer stopped before it finished: regenerate to try again."
    return StreamError("interrupted", message, retryable=True)


def _left_team() -> StreamError:
    message = "You are no longer a member of this team, so the answer stopped here."
    return StreamError("forbidden", message, retryable=False)


def _server_stopped() -> StreamError:
    message = "The server restarted while answering: regenerate to try again."
    return StreamError("interrupted", message, retryable=True)


async def end_all() -> None:
    """The process is stopping (SIGTERM): end every answer it streams as interrupted, its text
    saved and its watchers told, instead of leaving the last second's text unsaved and the
    answer streaming until another process's reaper finds it stale. Answers still starting end
    too: those that attach end at once; the rows of those whose start was cancelled (daphne
    cancels the sockets' tasks as it stops) are marked interrupted once written."""
    global STOPPING
    STOPPING = True
    streaming, starting = len(RUNNING), len(_STARTING)
    log.info("Stopping: ending %d answers streaming here, %d starting", streaming, starting)
    while RUNNING or _STARTING:
        running = list(RUNNING.values())
        for generation in running:
            generation.interrupt()
        ends = [asyncio.ensure_future(generation.wait()) for generation in running]
        await asyncio.wait([*ends, *_STARTING])


class _Inbox:
    """What the pump hands the relay, in order: the part of asyncio.Queue they use.

    It keeps its loop: asyncio.Queue looks it up whenever a get waits, which at chat pace is
    every token, and on Python 3.11 each lookup is a getpid() system call. One reader.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._items: deque[StreamEvent | object] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: StreamEvent | object) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def get_nowait(self) -> StreamEvent | object:
        return self._items.popleft()

    async def get(self) -> StreamEvent | object:
        while not self._items:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


def begin_reply(
    admission: Callable[[], ReplyPlan], handover: Callable[[ReplyPlan], None]
) -> Exchange:
    """In the database thread: plan and admit the answer, count it, hand the plan over (the
    upstream request starts), then write its rows.

    One trip: every trip to the one database thread waits behind everything queued there.
    Under load a second trip for the rows made the answer's first tokens wait for seconds
    after the upstream had sent them (bench/README.md). Whatever refuses the answer comes
    before the handover, so a refused answer sends nothing and writes nothing.
    """
    plan = admission()
    plan.client.check_chat(plan.messages, plan.params)
    exchange = replies.start_reply(plan, partial(_hand_over, handover))
    with _COUNTING:  # before the next trip in this thread can count the user's answers
        ATTACHING.add(exchange.assistant_id)
    return exchange


def _hand_over(handover: Callable[[ReplyPlan], None], plan: ReplyPlan) -> None:
    """Count the admitted answer and hand it over: from here the event loop holds the count."""
    admit(plan)
    try:
        handover(plan)
    except BaseException:
        release(plan.user.pk)
        raise


class _Handover:
    """The admitted plan, from the database thread to the event loop. Its count goes with it:
    if the caller has gone when it arrives, or goes after, the count is given back."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self.plan: asyncio.Future[ReplyPlan] = loop.create_future()
        self._gone = False

    def __call__(self, plan: ReplyPlan) -> None:  # in the database thread
        self._loop.call_soon_threadsafe(self._arrive, plan)

    def _arrive(self, plan: ReplyPlan) -> None:
        if self._gone:
            release(plan.user.pk)
        else:
            self.plan.set_result(plan)

    def abandon(self) -> None:
        self._gone = True
        if self.plan.done():
            release(self.plan.result().user.pk)


async def start_generation(
    admission: Callable[[], ReplyPlan],
) -> tuple[ReplyPlan, Generation, Exchange]:
    """Admit the answer, start its upstream request, and write its rows meanwhile.

    The generation relays nothing until `announced()`: the caller announces the rows
    (`replies.announce_reply`) first, so every tab hears of a message before its deltas.
    If the rows cannot be written the request is dropped; if the caller goes away (daphne
    cancels it as the process stops), the rows end as interrupted once written.
    """
    starting = asyncio.get_running_loop().create_future()
    _STARTING.add(starting)
    try:
        return await _start_generation(admission)
    finally:
        _STARTING.discard(starting)
        starting.set_result(None)


async def _start_generation(
    admission: Callable[[], ReplyPlan],
) -> tuple[ReplyPlan, Generation, Exchange]:
    handover = _Handover(asyncio.get_running_loop())
    trip = asyncio.ensure_future(database_sync_to_async(begin_reply)(admission, handover))
    trip.add_done_callback(_retrieved)
    try:
        await asyncio.wait((handover.plan, trip), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        handover.abandon()
        _end_unattached(trip)
        raise
    if not handover.plan.done():  # refused before the handover
        handover.abandon()
        await trip
    plan = handover.plan.result()
    try:
        generation = Generation(plan)
    except BaseException:
        release(plan.user.pk)
        raise
    try:
        exchange = await trip
        await generation.attach(exchange)
    except BaseException:
        generation.abandon()
        _end_unattached(trip)
        raise
    return plan, generation, exchange


def _end_unattached(trip: "asyncio.Future[Exchange]") -> None:
    """The rows the trip writes will have no generation here: they end as interrupted once
    written, instead of streaming on (holding their conversation and one of the user's
    answers) until a reaper finds them."""
    ending = asyncio.ensure_future(_end_when_written(trip))
    _STARTING.add(ending)
    ending.add_done_callback(_STARTING.discard)


async def _end_when_written(trip: "asyncio.Future[Exchange]") -> None:
    await asyncio.wait([trip])
    if trip.cancelled() or trip.exception() is not None:
        return  # nothing was written
    exchange = trip.result()
    with _COUNTING:
        ATTACHING.discard(exchange.assistant_id)
    try:
        ended = await database_sync_to_async(replies.end_unstarted)(exchange.assistant_id)
        await replies.announce_interrupted(ended)
    except Exception:  # the reaper ends it
        log.exception("Ending answer %s, which never started, failed", exchange.assistant_id)


def _retrieved(trip: "asyncio.Future[Exchange]") -> None:
    """A trip's error goes to its caller; one whose caller has gone has no one left to tell."""
    if not trip.cancelled():
        trip.exception()
