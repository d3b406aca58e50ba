"""Temporary chats nobody follows any more: deleted once no answer streams in them.

The page deletes a temporary chat when the user leaves it, but a tab closed before the chat's
`conversation.created` arrived never learnt its id. So when a socket that followed a temporary
chat closes (or follows another conversation), this process waits
`CHAT_TEMPORARY_GRACE_SECONDS` (a page that reconnects follows it again meanwhile) and then
deletes it if no socket, here or in another process, follows it and no answer streams in it
(else it looks again after another grace). What a process that
stops meanwhile leaves is deleted by the 24-hour sweep (`purge_temporary`).
"""

import asyncio
import logging
import weakref

from channels.db import database_sync_to_async
from django.conf import settings

from chatapp.chat import fanout
from chatapp.chat.actions import conversations

log = logging.getLogger(__name__)


class Watch:
    """One event loop's temporary chats left by a socket: when the last one left, and the task
    that ends each one."""

    def __init__(self) -> None:
        self.left_at: dict[int, float] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}


_watches: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watch]" = (
    weakref.WeakKeyDictionary()
)


def _watch() -> Watch:
    return _watches.setdefault(asyncio.get_running_loop(), Watch())


def left(conversation_id: int) -> None:
    """A socket stopped following this temporary chat: end it if nobody comes back."""
    watch = _watch()
    watch.left_at[conversation_id] = asyncio.get_running_loop().time()
    if conversation_id not in watch.tasks:
        task = asyncio.create_task(_end_when_abandoned(watch, conversation_id))
        watch.tasks[conversation_id] = task


async def settled() -> None:
    """Wait until this loop has decided about every chat left so far (tests)."""
    while tasks := list(_watch().tasks.values()):
        await asyncio.gather(*tasks, return_exceptions=True)


async def _end_when_abandoned(watch: Watch, conversation_id: int) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            # Counted from the last socket that left, however many left before it.
            while (wait := watch.left_at[conversation_id] + _grace() - loop.time()) > 0:
                await asyncio.sleep(wait)
            if await _followed(conversation_id):
                return  # its socket's close looks again
            end = database_sync_to_async(conversations.end_abandoned_temporary)
            if await end(conversation_id):
                return
            watch.left_at[conversation_id] = loop.time()  # an answer still streams there
    except Exception:
        log.exception("Ending temporary chat %s failed: the sweep deletes it", conversation_id)
    finally:
        watch.tasks.pop(conversation_id, None)
        watch.left_at.pop(conversation_id, None)


def _grace() -> float:
    return float(settings.CHAT_TEMPORARY_GRACE_SECONDS)


async def _followed(conversation_id: int) -> bool:
    """Whether a socket follows the conversation; in doubt (another layer, Redis down), yes."""
    if fanout.followers().of(conversation_id):
        return True
    if not fanout.spans_processes():
        return False
    try:
        return await fanout.followed_elsewhere(conversation_id)
    except Exception:
        return True
