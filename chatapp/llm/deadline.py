"""A deadline for the reads of one stream that moves after every event at almost no cost.

`asyncio.timeout_at` around each read costs a timer handle, a heap push and its cancellation
per token. A `ReadDeadline` keeps one timer: moving the deadline later is a float store, and a
timer that fires before the (moved) deadline arms itself again for it. The deadline applies
only while a read is awaited, never to the consumer's code between two events.
"""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class ReadDeadline:
    def __init__(self, when: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.when = when
        self._timer: asyncio.TimerHandle | None = None
        self._reader: asyncio.Task[object] | None = None  # the task while it awaits a read
        self._fired = False

    def move(self, when: float) -> None:
        """The next reads must end by `when` (earlier or later than before)."""
        if self._timer is not None and when < self._timer.when():
            self._timer.cancel()
            self._timer = None
        self.when = when

    async def read(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`; TimeoutError if the deadline passes first."""
        if self._loop.time() >= self.when:
            close = getattr(awaitable, "close", None)
            if close is not None:  # a coroutine that will never run
                close()
            raise TimeoutError
        task = asyncio.current_task(self._loop)  # no get_running_loop(): a getpid() on 3.11
        assert task is not None
        cancelling = task.cancelling()
        if self._timer is None:
            self._timer = self._loop.call_at(self.when, self._expire)
        self._reader, self._fired = task, False
        try:
            return await awaitable
        except asyncio.CancelledError:
            # Ours, and nobody else's since: a timeout (asyncio.timeout's own rule).
            if self._fired and task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        finally:
            self._reader = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._reader is None:
            return  # between reads: the next read arms the timer again
        if self._loop.time() < self.when:
            self._timer = self._loop.call_at(self.when, self._expire)
            return
        self._fired = True
        self._reader.cancel()
