"""Notices when the channel layer's Redis restarts, or comes back after being unreachable.

Redis holds the group memberships: after a restart every chat socket in this process is deaf
to its conversation, and whatever was broadcast during an outage is gone. So when either
happens this process re-registers its running generations, then closes its chat sockets with
4012 ("service restart"); the page reconnects, resubscribes, and gets the text so far from the
generating process and the rest live. Only the Redis layer is watched: nothing else forgets.
"""

import asyncio
import logging
import weakref
from contextlib import suppress

from channels.layers import get_channel_layer

from chatapp.chat.generation import RUNNING

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
# "Service restart" is 1012 in the IANA registry, but daphne (autobahn) only sends 1000 and
# 3000-4999: the application range carries the same meaning.
SERVICE_RESTART = 4012

_sockets: "weakref.WeakSet" = weakref.WeakSet()
_task: asyncio.Task | None = None


def follow(consumer) -> None:
    """Close this socket (consumer.close) when the layer has forgotten it."""
    _sockets.add(consumer)


def forget(consumer) -> None:
    _sockets.discard(consumer)


async def server_identity(layer) -> tuple | None:
    """The run ids of the layer's Redis servers (new on every start); None if one is down."""
    identity = []
    try:
        for index in range(layer.ring_size):
            identity.append((await layer.connection(index).info("server"))["run_id"])
    except Exception:
        return None
    return tuple(identity)


async def recover() -> None:
    """The layer forgot this process: rejoin the generations' groups, then close the sockets."""
    for generation in list(RUNNING.values()):
        await generation.rejoin()
    sockets = list(_sockets)
    log.warning("The channel layer lost its state: closing %d chat sockets", len(sockets))
    for consumer in sockets:
        forget(consumer)
        with suppress(Exception):  # a socket whose consumer already died with the layer
            await consumer.close(code=SERVICE_RESTART)


async def _watch(layer) -> None:
    known = await server_identity(layer)
    lost = known is None
    while True:
        await asyncio.sleep(CHECK_SECONDS)
        current = await server_identity(layer)
        if current is None:
            if not lost:
                log.warning("The channel layer's Redis is unreachable")
            lost = True
        elif lost or current != known:
            try:
                await recover()
            except Exception:
                log.exception("Recovering from a channel layer restart failed")
            known, lost = current, False


def ensure_running() -> None:
    """Start this process's watch (once per event loop) when the layer is Redis."""
    global _task
    layer = get_channel_layer()
    if not hasattr(layer, "ring_size"):
        return
    loop = asyncio.get_running_loop()
    if _task is not None and not _task.done() and _task.get_loop() is loop:
        return
    _task = loop.create_task(_watch(layer))
