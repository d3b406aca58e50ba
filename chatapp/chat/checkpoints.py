"""One checkpoint statement a second for all the answers this process is streaming.

Each streaming answer's text lives in memory (`generation.Generation`); about once a second
the answers that moved on, or whose heartbeat is due, are written together in one UPDATE and
one commit (`replies.checkpoint_replies`). An answer that ends leaves first and waits for a
write in flight, so no checkpoint can land after its final write.
"""

import asyncio
import logging
import time
import weakref
from typing import Protocol

from channels.db import database_sync_to_async

from chatapp.chat.actions import replies

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 1.0


class Checkpointed(Protocol):
    message_id: int

    def checkpoint_due(self, now: float) -> replies.Checkpoint | None: ...


class Checkpoints:
    """The answers of one event loop (a server process) and the task that writes them."""

    def __init__(self) -> None:
        self._answers: dict[int, Checkpointed] = {}
        self._task: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[None] | None = None

    def add(self, answer: Checkpointed) -> None:
        self._answers[answer.message_id] = answer
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    def discard(self, answer: Checkpointed) -> None:
        self._answers.pop(answer.message_id, None)

    async def remove(self, answer: Checkpointed) -> None:
        """The answer ends: no checkpoint of it after this returns."""
        self.discard(answer)
        if self._writing is not None and not self._writing.done():
            await asyncio.shield(self._writing)

    async def _run(self) -> None:
        while self._answers:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            now = time.monotonic()
            due = [c for a in list(self._answers.values()) if (c := a.checkpoint_due(now))]
            if due:
                self._writing = asyncio.create_task(self._write(due))
                await asyncio.shield(self._writing)

    async def _write(self, due: list[replies.Checkpoint]) -> None:
        try:
            await database_sync_to_async(replies.checkpoint_replies)(due)
        except Exception:
            log.exception("Checkpointing %d answers failed", len(due))


_by_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Checkpoints]" = (
    weakref.WeakKeyDictionary()
)


def checkpoints() -> Checkpoints:
    """This event loop's checkpoints (one per server process; one per test in the suite)."""
    loop = asyncio.get_running_loop()
    registry = _by_loop.get(loop)
    if registry is None:
        registry = _by_loop[loop] = Checkpoints()
    return registry
