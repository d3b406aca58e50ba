"""Conversation events to the sockets that follow them: this process's directly, others' by layer.

A socket of this process that follows a conversation is registered here, so an event about it
(a delta of an answer this process generates, its end) reaches the socket by a plain call, in
order, encoded to JSON once for all of them. Only when the channel layer spans processes
(Redis) does the event also go to the conversation's group, wrapped with this process's
origin; sockets here drop the copy that comes back, since they already have it.

Deltas, the events at token rate, go on the layer only while a socket of another process
follows the conversation (`Elsewhere`): the layer's group is asked when an answer starts
and about once a second, and a socket elsewhere that subscribes mid-answer asks the
generation for its text first (a snapshot request), which turns publishing on before the
snapshot is taken, so every delta after it reaches that socket.
"""

import asyncio
import logging
import time
import uuid
import weakref
from collections import Counter
from functools import partial
from typing import Any, Protocol

from channels.layers import InMemoryChannelLayer

from chatapp.chat.frames import encode
from chatapp.chat.groups import conversation_group
from chatapp.core.layers import channel_layer

log = logging.getLogger(__name__)

# This process, as the origin of the events it puts on the channel layer.
ORIGIN = uuid.uuid4().hex
WRAPPED = "conversation.event"  # the layer message type carrying an event from another process
# Events at token rate: on the layer only while another process follows the conversation.
SKIPPABLE = frozenset({"message.delta"})
RECHECK_SECONDS = 1.0  # how often the conversations streamed here are checked for followers


class Follower(Protocol):
    async def relay(self, event: dict[str, Any], text: str | None = None) -> None: ...


class Followers:
    """The sockets of one event loop (this process's server loop) by conversation, and
    (`elsewhere`) which conversations it streams are followed in other processes.

    Sockets are held by weak reference, so one that goes without leaving is dropped when it is
    collected. Not in a WeakSet: `of` runs for every delta, and listing a WeakSet of one socket
    takes 1.6 µs against 0.3 µs for these references.
    """

    def __init__(self) -> None:
        # conversation -> {id(socket): reference}
        self._by_conversation: dict[int, dict[int, weakref.ref[Any]]] = {}
        self.elsewhere = Elsewhere()

    def follow(self, socket: Follower, conversation_id: int) -> None:
        key = id(socket)
        collected = partial(self._forget, conversation_id, key)
        self._by_conversation.setdefault(conversation_id, {})[key] = weakref.ref(socket, collected)

    def leave(self, socket: Follower, conversation_id: int) -> None:
        self._forget(conversation_id, id(socket))

    def _forget(self, conversation_id: int, key: int, _: object = None) -> None:
        sockets = self._by_conversation.get(conversation_id)
        if sockets is not None:
            sockets.pop(key, None)
            if not sockets:
                del self._by_conversation[conversation_id]

    def of(self, conversation_id: int) -> list[Follower]:
        sockets = self._by_conversation.get(conversation_id)
        if not sockets:
            return []
        return [socket for ref in list(sockets.values()) if (socket := ref()) is not None]


_followers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Followers]" = (
    weakref.WeakKeyDictionary()
)


def followers() -> Followers:
    """This event loop's registry (one per server process; one per test in the suite)."""
    loop = asyncio.get_running_loop()
    registry = _followers.get(loop)
    if registry is None:
        registry = _followers[loop] = Followers()
    return registry


def spans_processes() -> bool:
    """Whether other processes may have sockets: anything but the in-memory layer."""
    return not isinstance(channel_layer(), InMemoryChannelLayer)


async def publish(event: dict[str, Any], registry: Followers | None = None) -> bool:
    """Deliver to this process's followers, then to other processes; False if the layer failed.

    Call it once the write the event reports has committed. `registry`: this loop's
    `followers()`, when the caller holds it (a generation, for each of its deltas: finding it
    takes `get_running_loop()`, a getpid() system call on Python 3.11).
    """
    conversation_id = event["conversation_id"]
    registry = registry or followers()
    local = registry.of(conversation_id)
    if local:
        text = encode(event)
        for socket in local:
            try:
                await socket.relay(event, text)
            except Exception:  # one broken socket does not stop the others or the answer
                log.exception("Relaying %s to a socket failed", event["type"])
    if not spans_processes():
        return True
    if event["type"] in SKIPPABLE and not registry.elsewhere.followed(conversation_id):
        return True
    wrapped = {"type": WRAPPED, "origin": ORIGIN, "event": event}
    try:
        await channel_layer().group_send(conversation_group(conversation_id), wrapped)
    except Exception:
        return False
    return True


def from_elsewhere(message: dict[str, Any]) -> dict[str, Any] | None:
    """The event a layer message carries, unless this process published (and delivered) it."""
    if message.get("origin") == ORIGIN:
        return None
    event = message.get("event")
    return event if isinstance(event, dict) else None


class Elsewhere:
    """Which conversations streamed by this process have followers in other processes.

    A conversation is tracked while this process streams an answer in it (`start` / `end`);
    one it does not track counts as followed (its events are rare, they always go out).
    Any doubt (the layer failed, a layer other than channels-redis) counts as followed too.
    """

    def __init__(self) -> None:
        self._streaming: Counter[int] = Counter()  # conversation -> answers streaming here
        self._followed: set[int] = set()
        self._news: Counter[int] = Counter()  # conversation -> followers announced so far
        self._task: asyncio.Task[None] | None = None

    def followed(self, conversation_id: int) -> bool:
        return conversation_id in self._followed or conversation_id not in self._streaming

    async def start(self, conversation_id: int) -> None:
        """An answer here starts relaying: ask the layer before its first delta."""
        self._streaming[conversation_id] += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._recheck())
        await self._check(conversation_id)

    def end(self, conversation_id: int) -> None:
        self._streaming[conversation_id] -= 1
        if self._streaming[conversation_id] <= 0:
            del self._streaming[conversation_id]
            self._followed.discard(conversation_id)
            self._news.pop(conversation_id, None)

    def follower_arrived(self, conversation_id: int, reply_channel: str) -> None:
        """A socket asked for a streaming answer's text: if it is elsewhere, publish from now on.

        Call it before the snapshot is taken; a check already in flight no longer counts.
        """
        if conversation_id in self._streaming and not is_ours(reply_channel):
            self._followed.add(conversation_id)
            self._news[conversation_id] += 1

    async def _check(self, conversation_id: int) -> None:
        news = self._news[conversation_id]
        try:
            followed = await followed_elsewhere(conversation_id)
        except Exception:
            followed = True  # the next delta's publish reports the outage
        if conversation_id not in self._streaming or self._news[conversation_id] != news:
            return  # ended meanwhile, or a follower arrived after the question was asked
        if followed:
            self._followed.add(conversation_id)
        else:
            self._followed.discard(conversation_id)

    async def _recheck(self) -> None:
        """About once a second: followers elsewhere that left (or came without a snapshot)."""
        while self._streaming:
            await asyncio.sleep(RECHECK_SECONDS)
            conversations = list(self._streaming)
            await asyncio.gather(*(self._check(c) for c in conversations))


def _own_prefix() -> str | None:
    """How this process's channel names start (channels-redis), or None."""
    prefix = getattr(channel_layer(), "client_prefix", None)
    return f"specific.{prefix}!" if isinstance(prefix, str) else None


def is_ours(channel: str) -> bool:
    prefix = _own_prefix()
    return prefix is not None and channel.startswith(prefix)


async def followed_elsewhere(conversation_id: int) -> bool:
    """Whether the conversation's layer group holds a channel of another process.

    channels-redis names each process's channels `specific.<its prefix>!...` and keeps a
    group as a sorted set scored by when each channel joined; the layer's own group_send
    reads the same set. Another layer: assume so.
    """
    layer: Any = channel_layer()
    prefix = _own_prefix()
    if prefix is None or not hasattr(layer, "_group_key"):
        return True
    group = conversation_group(conversation_id)
    connection = layer.connection(layer.consistent_hash(group))
    since = int(time.time()) - layer.group_expiry
    members = await connection.zrangebyscore(layer._group_key(group), min=since, max="+inf")
    ours = prefix.encode()
    return any(not member.startswith(ours) for member in members)
