"""What a server process finishes before it exits on SIGTERM or SIGINT (a deploy, a restart).

Apps register a coroutine function with `when_stopping`; the server (`chatapp.core.server`)
awaits them all before daphne's reactor stops, for at most STOP_SECONDS, well inside the
supervisor's 15 s before SIGKILL and the 30 s compose gives a container to stop (Docker's
default, 10 s, would leave the supervisor too little time to end what a process left).
A hook that runs out of that time, or fails, leaves work unsaved: the process then exits
with STOP_UNFINISHED rather than a clean stop's 0, and its supervisor ends what it left
streaming (`chatapp.core.processes`).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

STOP_SECONDS = 8.0
STOP_UNFINISHED = 3  # the exit code of a process whose hooks did not all finish


_hooks: list[Callable[[], Awaitable[None]]] = []
_stopping = False
_unfinished = False


def is_stopping() -> bool:
    """Whether this process has begun to stop (its health checks then say so)."""
    return _stopping


def begin() -> None:
    """The process begins to stop: is_stopping() says so from now on, before the hooks run."""
    global _stopping
    _stopping = True


def finished() -> bool:
    """Whether every hook that ran finished in time and without an error."""
    return not _unfinished


def when_stopping(hook: Callable[[], Awaitable[None]]) -> None:
    if hook not in _hooks:
        _hooks.append(hook)


async def run_hooks(timeout: float | None = None) -> None:
    timeout = STOP_SECONDS if timeout is None else timeout
    global _unfinished
    begin()
    tasks = [asyncio.ensure_future(hook()) for hook in _hooks]
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        log.warning("Stopping: %s did not finish within %g s", task.get_coro(), timeout)
        task.cancel()
        _unfinished = True
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("Stopping: a hook failed", exc_info=task.exception())
            _unfinished = True
