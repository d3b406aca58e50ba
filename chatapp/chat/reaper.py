"""Answers left streaming by a process that died: marked interrupted, their text kept.

A generation refreshes its message's heartbeat with every checkpoint (at least every ~10 s),
so a streaming message with an old heartbeat has nobody writing it any more.
"""

import asyncio
import logging
from contextlib import suppress
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from chatapp.chat.actions import broadcast
from chatapp.chat.models import Message, MessageStatus

log = logging.getLogger(__name__)

ERROR_CODE = "interrupted"
ERROR_MESSAGE = "The server stopped while answering: regenerate to try again."

_task: asyncio.Task | None = None


def reap_stale_generations(max_age_seconds: float | None = None) -> dict:
    """Mark streaming messages with a stale heartbeat interrupted; returns counts and ids."""
    from chatapp.chat.generation import RUNNING

    if max_age_seconds is None:
        max_age_seconds = settings.CHAT_STALE_GENERATION_SECONDS
    cutoff = timezone.now() - timedelta(seconds=max_age_seconds)
    stale = Message.objects.filter(status=MessageStatus.STREAMING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    stale = stale.exclude(pk__in=list(RUNNING))  # alive in this very process
    found = list(stale.values_list("id", "conversation_id"))
    ids = [message_id for message_id, _ in found]
    updated = Message.objects.filter(pk__in=ids, status=MessageStatus.STREAMING).update(
        status=MessageStatus.INTERRUPTED,
        error_code=ERROR_CODE,
        error_message=ERROR_MESSAGE,
        updated_at=timezone.now(),
    )
    if updated:
        log.warning("Marked %d abandoned streaming answers interrupted", updated)
    return {"checked": len(found), "interrupted": updated, "messages": found}


async def announce(messages: list[tuple[int, int]]) -> None:
    """Tell the tabs watching those conversations that the answers ended."""
    for message_id, conversation_id in messages:
        base = {"message_id": message_id, "conversation_id": conversation_id}
        error = {"code": ERROR_CODE, "message": ERROR_MESSAGE, "retryable": True}
        await broadcast(conversation_id, {"type": "message.error", **base, "error": error})
        done = {"type": "message.done", **base, "status": MessageStatus.INTERRUPTED}
        await broadcast(conversation_id, {**done, "finish_reason": None, "usage": None})


async def reap_and_announce() -> dict:
    counts = await database_sync_to_async(reap_stale_generations)()
    await announce(counts["messages"])
    return counts


async def _run_periodically(interval: float) -> None:
    while True:
        try:
            await reap_and_announce()
        except Exception:
            log.exception("Looking for abandoned answers failed")
        await asyncio.sleep(interval)


def ensure_running() -> None:
    """Start this process's periodic check (once per event loop); the first run is immediate."""
    global _task
    interval = settings.CHAT_REAPER_INTERVAL_SECONDS
    if not interval:
        return
    loop = asyncio.get_running_loop()
    if _task is not None and not _task.done() and _task.get_loop() is loop:
        return
    _task = loop.create_task(_run_periodically(interval))


async def stop() -> None:
    """End this process's periodic check (tests, shutdown)."""
    global _task
    if _task is not None:
        _task.cancel()
        with suppress(asyncio.CancelledError):
            await _task
        _task = None
