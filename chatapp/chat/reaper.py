"""Answers left streaming by a process that died: marked interrupted, their text kept.

Under `manage.py serve` the supervisor ends a dead process's answers, and releases the budget
holds of the API answers it relayed, as soon as it sees the process exit (`end_answers_of`);
the heartbeat check below and the holds' expiry are for the rest: a server started
otherwise, or a supervisor that died with its processes (a machine or container gone).

A generation refreshes its message's heartbeat with every checkpoint (at least every ~10 s),
so a streaming message with an old heartbeat has nobody writing it any more. The same periodic
check deletes uploads that were never sent (see chatapp.uploads.actions.sweep_unattached) and
temporary chats past their lifetime (chatapp.chat.actions.conversations.purge_temporary) and
the budget holds of API answers whose process died (chatapp.teams.actions.delete_expired_holds)
and the rate limit's rows older than its minute (chatapp.teams.actions.delete_old_requests).

An answer whose team screens answers (`safety_output`) and that kept text is marked unscreened
in the same transaction (failing closed: withheld), then screened whole, as an answer's end
is; its verdict replaces the mark, and its watchers hear of it once that is in. The sweep waits
SCREENING_SECONDS for the verdicts in all: those later stand unscreened (docs/safety.md).
"""

import asyncio
import logging
from contextlib import suppress
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from chatapp.chat.actions import conversations, replies
from chatapp.chat.generation import RUNNING
from chatapp.teams import actions as team_actions
from chatapp.uploads.actions import sweep_unattached

log = logging.getLogger(__name__)

# How long a sweep, or the supervisor, waits for Llama Guard's verdicts on the answers it
# marked: two attempts at the default LLAMA_GUARD_TIMEOUT.
SCREENING_SECONDS = 10.0

_task: asyncio.Task[None] | None = None


def reap_stale_generations(max_age_seconds: float | None = None) -> dict[str, Any]:
    """Mark streaming messages with a stale heartbeat interrupted; returns counts and the
    answers this call marked."""
    if max_age_seconds is None:
        max_age_seconds = settings.CHAT_STALE_GENERATION_SECONDS
    cutoff = timezone.now() - timedelta(seconds=max_age_seconds)
    found = replies.stale_replies(cutoff, alive=list(RUNNING))
    marked = replies.mark_interrupted(found)
    return {
        "checked": len(found),
        "interrupted": len(marked),
        "abandoned": marked,
    }


def end_answers_of(server_process: str) -> None:
    """The server process with this token has exited (its supervisor saw it): mark its
    streaming answers interrupted now, their text as last checkpointed, and tell the sockets
    watching them (`chatapp.core.processes`); release the budget holds of the API answers it
    was relaying. Runs on a thread of the supervisor's."""
    try:
        marked = replies.mark_interrupted(replies.replies_of_process(server_process))
        if marked:
            log.warning("A server process exited: ended its %d streaming answers", len(marked))
            async_to_sync(announce)(marked)
    finally:
        released = team_actions.release_holds_of(server_process)
        if released:
            log.warning("A server process exited: released its %d budget holds", released)


async def announce(marked: list[replies.Abandoned]) -> None:
    """Have the marked answers' text screened where their team screens answers (for
    SCREENING_SECONDS at most), then tell the sockets watching them how they ended."""
    await replies.announce_interrupted(await replies.screen_interrupted(marked, SCREENING_SECONDS))


async def reap_and_announce() -> dict[str, Any]:
    counts = await database_sync_to_async(reap_stale_generations)()
    await announce(counts["abandoned"])
    return counts


async def _run_periodically(interval: float) -> None:
    while True:
        try:
            await reap_and_announce()
        except Exception:
            log.exception("Looking for abandoned answers failed")
        try:
            await database_sync_to_async(sweep_unattached)()
        except Exception:
            log.exception("Deleting uploads that were never sent failed")
        try:
            await database_sync_to_async(conversations.purge_temporary)(timezone.now())
        except Exception:
            log.exception("Deleting expired temporary chats failed")
        try:
            await database_sync_to_async(team_actions.delete_expired_holds)(timezone.now())
        except Exception:
            log.exception("Deleting expired budget holds failed")
        try:
            await database_sync_to_async(team_actions.delete_old_requests)(timezone.now())
        except Exception:
            log.exception("Deleting the rate limit's old requests failed")
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
