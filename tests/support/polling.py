"""Waiting for a condition by polling it: the bound is a ceiling for a busy machine, never an
expectation of speed."""

import asyncio
import inspect
import time
from collections.abc import Callable

# Long enough for a process to start on a busy 2-core machine.
DEFAULT_SECONDS = 60.0
INTERVAL = 0.05


def wait_for(condition: Callable[[], object], what: str, seconds: float = DEFAULT_SECONDS):
    """Poll until condition() returns something truthy and return it; TimeoutError if never."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(INTERVAL)


async def await_for(condition: Callable, what: str, seconds: float = DEFAULT_SECONDS):
    """wait_for for async tests: condition may also be a coroutine function."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(INTERVAL)
