"""Generations: one asyncio task per streaming answer, detached from the socket that asked for it.

A generation reads the upstream stream into a queue as fast as it arrives (the pump), and
relays it to the conversation's channel-layer group in small coalesced frames numbered by
`seq`. Its text lives in memory and reaches the database at most about once a second, then
completely at the end. It listens on a channel of its own (group `chat.generation.<id>`) for
`generation.stop` and for snapshot requests from sockets that join mid-stream.
"""

import asyncio
import logging
import time
from contextlib import aclosing, suppress

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from chatapp.chat import actions
from chatapp.chat.actions import Exchange, ReplyPlan, ReplyResult
from chatapp.chat.models import MessageStatus
from chatapp.core.metrics import (
    ACTIVE_STREAMS,
    STREAM_DURATION,
    TIME_TO_FIRST_TOKEN,
    TOKENS_RELAYED,
    UPSTREAM_ERRORS,
    UPSTREAM_RETRIES,
)
from chatapp.llm import Finish, Retrying, StreamError, TextDelta

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.005  # deltas arriving this close together travel in one frame
CHECKPOINT_SECONDS = 1.0
HEARTBEAT_SECONDS = 10.0  # a checkpoint even when the model is silent, so the reaper waits
LAYER_RETRY_SECONDS = 0.5  # between tries to read from a channel layer that failed
LISTENER_EXIT_SECONDS = 5.0  # how long a finished answer waits for its listener to stop
_END = object()  # the pump has finished: upstream ended, failed or was cancelled

# The generations this process is running, by assistant message id.
RUNNING: dict[int, "Generation"] = {}


class Generation:
    def __init__(self, plan: ReplyPlan):
        # stream_chat validates the parameters now, before anything is written or sent.
        self._events = plan.client.stream_chat(plan.messages, plan.params)
        self.team, self.user, self.model = plan.team, plan.user, plan.params.model
        self.message_id: int | None = None
        self.conversation_id: int | None = None
        self.frames: list[str] = []
        self.stop_requested = False
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.token_count = 0
        self._queue: asyncio.Queue = asyncio.Queue()
        self._announced = asyncio.Event()
        self._last_checkpoint = self.started
        self._checkpoint_task: asyncio.Task | None = None
        self._broadcast_failing = False
        self._layer = get_channel_layer()
        self._pump_task = asyncio.create_task(self._pump())
        self._task: asyncio.Task | None = None

    @property
    def seq(self) -> int:
        return len(self.frames)

    @property
    def content(self) -> str:
        return "".join(self.frames)

    async def attach(self, exchange: Exchange) -> None:
        """The rows exist: listen for stop and snapshot requests; relay once announced."""
        self.message_id = exchange.assistant_message["id"]
        self.conversation_id = exchange.conversation_id
        channel = self._channel = await self._layer.new_channel()
        await self._layer.group_add(actions.generation_group(self.message_id), channel)
        RUNNING[self.message_id] = self
        self._task = asyncio.create_task(self._run(channel))

    async def rejoin(self) -> None:
        """Join the generation's group again, after the channel layer forgot it (Redis restart)."""
        try:
            await self._layer.group_add(actions.generation_group(self.message_id), self._channel)
        except Exception:
            log.exception("Rejoining the group of answer %s failed", self.message_id)

    def announced(self) -> None:
        """message.created has gone out, so deltas may follow."""
        self._announced.set()

    def abandon(self) -> None:
        """The rows could not be written: drop the upstream request."""
        self._pump_task.cancel()

    def stop(self) -> None:
        self.stop_requested = True
        self._pump_task.cancel()  # closes the upstream response at once

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _pump(self) -> None:
        try:
            async with aclosing(self._events) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        self._count_token()
                    self._queue.put_nowait(event)
        except asyncio.CancelledError:
            pass  # stopped or abandoned; aclosing has closed the upstream response
        except Exception:
            log.exception("Reading the Llama API stream failed")
            message = "Something went wrong while answering: try again."
            self._queue.put_nowait(StreamError("internal_error", message, retryable=True))
        finally:
            self._queue.put_nowait(_END)

    def _count_token(self) -> None:
        self.token_count += 1
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
            TIME_TO_FIRST_TOKEN.observe(self.first_token_at - self.started)

    async def _run(self, channel: str) -> None:
        listener = asyncio.create_task(self._listen(channel))
        ACTIVE_STREAMS.inc()
        try:
            await self._announced.wait()
            try:
                result = await self._relay()
            except Exception:
                log.exception("Relaying answer %s failed", self.message_id)
                message = "Something went wrong while answering: regenerate to try again."
                result = self._result(StreamError("internal_error", message, retryable=True))
            await self._finish_checkpoint()
            try:
                await actions.finish_reply(result, self.team, self.user)
            except Exception:  # the reaper marks it interrupted once the heartbeat is stale
                log.exception("Saving the end of answer %s failed", self.message_id)
            self._observe(result)
        finally:
            ACTIVE_STREAMS.dec()
            self._pump_task.cancel()
            RUNNING.pop(self.message_id, None)
            await self._stop_listening(listener, channel)

    async def _stop_listening(self, listener: asyncio.Task, channel: str) -> None:
        """End the listener by a message, not by cancelling it.

        With channels-redis, all channels of a process share one blocking pop; cancelling the
        task that is in it can drop a message it was handed for another channel (such as the
        message.done just broadcast to the sockets).
        """
        with suppress(Exception):
            await self._layer.group_discard(actions.generation_group(self.message_id), channel)
            await self._layer.send(channel, {"type": "generation.exit"})
            await asyncio.wait_for(asyncio.shield(listener), LISTENER_EXIT_SECONDS)
        listener.cancel()

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
                self.stop()
            elif kind == "generation.snapshot_request":
                with suppress(Exception):  # the asking socket falls back to the stored row
                    await self._layer.send(event["reply_channel"], self._snapshot())

    def _snapshot(self) -> dict:
        """The text relayed so far: deltas 1..seq joined."""
        return {
            "type": "generation.snapshot",
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "content": self.content,
            "seq": self.seq,
        }

    async def _relay(self) -> ReplyResult:
        event = None
        while True:
            if event is None:
                event = await self._next_event()
            if isinstance(event, TextDelta):
                event = await self._relay_text(event.text)
            elif isinstance(event, Retrying):
                await self._announce_retry(event)
                event = None
            else:
                return self._result(event)

    async def _next_event(self):
        if not self._queue.empty():
            return self._queue.get_nowait()
        while True:
            try:
                return await asyncio.wait_for(self._queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                self._checkpoint()

    async def _relay_text(self, text: str):
        """Send one frame with this delta and those close behind it; return what ended it."""
        parts = [text]
        if self.frames:  # the first token goes out at once; later ones are coalesced
            await asyncio.sleep(COALESCE_SECONDS)
        following = None
        while following is None and not self._queue.empty():
            event = self._queue.get_nowait()
            if isinstance(event, TextDelta):
                parts.append(event.text)
            else:
                following = event
        frame = "".join(parts)
        if frame:
            await self._emit(frame)
        return following

    async def _emit(self, text: str) -> None:
        self.frames.append(text)
        delta = {
            "type": "message.delta",
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "seq": self.seq,
            "text": text,
        }
        await self._broadcast(delta)
        if time.monotonic() - self._last_checkpoint >= CHECKPOINT_SECONDS:
            self._checkpoint()

    async def _announce_retry(self, event: Retrying) -> None:
        UPSTREAM_RETRIES.inc()
        retrying = {
            "type": "message.retrying",
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "attempt": event.attempt,
            "delay": round(event.delay, 2),
            "code": event.code,
        }
        await self._broadcast(retrying)

    async def _broadcast(self, event: dict) -> None:
        """Send to the conversation's sockets; a channel layer failure does not end the answer.

        The text stays in memory and in checkpoints; sockets that missed frames are closed by
        `layer_watch` once the layer is back, and resubscribe.
        """
        try:
            await self._layer.group_send(actions.conversation_group(self.conversation_id), event)
        except Exception:
            if not self._broadcast_failing:  # once per outage, not once per token
                log.warning(
                    "Answer %s cannot reach its sockets: channel layer down", self.message_id
                )
            self._broadcast_failing = True
        else:
            self._broadcast_failing = False

    def _checkpoint(self) -> None:
        """Write the text so far in the background; skipped while the previous write runs."""
        if self._checkpoint_task is not None and not self._checkpoint_task.done():
            return
        self._last_checkpoint = time.monotonic()
        self._checkpoint_task = asyncio.create_task(self._write_checkpoint())

    async def _write_checkpoint(self) -> None:
        try:
            await database_sync_to_async(actions.checkpoint_reply)(
                self.message_id, self.content, self.seq
            )
        except Exception:
            log.exception("Checkpointing answer %s failed", self.message_id)

    async def _finish_checkpoint(self) -> None:
        # An older checkpoint landing after the final write would undo it.
        if self._checkpoint_task is not None:
            await self._checkpoint_task

    def _result(self, event) -> ReplyResult:
        ended = time.monotonic()
        result = ReplyResult(
            message_id=self.message_id,
            conversation_id=self.conversation_id,
            status=MessageStatus.COMPLETE,
            content=self.content,
            seq=self.seq,
            model=self.model,
            duration_ms=int((ended - self.started) * 1000),
        )
        if self.first_token_at is not None:
            result.time_to_first_token_ms = int((self.first_token_at - self.started) * 1000)
        if isinstance(event, Finish):
            result.finish_reason = event.finish_reason
            result.usage = event.usage
            result.upstream_request_id = event.request_id
        elif event is _END and self.stop_requested:
            result.status = MessageStatus.STOPPED
        else:
            error = event if isinstance(event, StreamError) else _ended_early()
            result.error = error
            result.upstream_request_id = error.request_id
            result.status = MessageStatus.INTERRUPTED if self.frames else MessageStatus.ERROR
        return result

    def _observe(self, result: ReplyResult) -> None:
        STREAM_DURATION.observe(time.monotonic() - self.started)
        TOKENS_RELAYED.inc(result.usage.completion_tokens if result.usage else self.token_count)
        if result.error is not None:
            UPSTREAM_ERRORS.labels(result.error.code).inc()


def _ended_early() -> StreamError:
    message = "The answer stopped before it finished: regenerate to try again."
    return StreamError("interrupted", message, retryable=True)


async def start_generation(plan: ReplyPlan, before_announce=None) -> tuple[Generation, Exchange]:
    """Start the upstream request, write the rows meanwhile, announce them, then relay.

    `before_announce(exchange)` runs once the rows exist and before message.created goes out
    (the consumer joins the new conversation's group there).
    """
    generation = Generation(plan)
    try:
        exchange = await database_sync_to_async(actions.start_reply)(plan)
        await generation.attach(exchange)
    except BaseException:
        generation.abandon()
        raise
    try:
        if before_announce is not None:
            await before_announce(exchange)
        await actions.announce_reply(exchange, plan.request_id)
    finally:
        generation.announced()
    return generation, exchange
