"""What a server process finishes before it exits on SIGTERM or SIGINT (a deploy, a restart).

Apps register a coroutine function with `when_stopping`; the server (`chatapp.core.server`)
awaits them all before daphne's reactor stops, for at most STOP_SECONDS, well inside the
supervisor's 15 s before SIGKILL and Docker's 10 s.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

STOP_SECONDS = 8.0

_hooks: list[Callable[[], Awaitable[None]]] = []
_stopping = False


def is_stopping() -> bool:
    """Whether this process has begun to stop (its health checks then say so)."""
    return _stopping


def when_stopping(hook: Callable[[], Awaitable[None]]) -> None:
    if hook not in _hooks:
        _hooks.append(hook)


async def run_hooks(timeout: float = STOP_SECONDS) -> None:
    global _stopping
    _stopping = True
    tasks = [asyncio.ensure_future(hook()) for hook in _hooks]
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        log.warning("Stopping: %s did not finish within %.0f s", task.get_coro(), timeout)
        task.cancel()
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("Stopping: a hook failed", exc_info=task.exception())
