import time
from typing import Any

from channels import layers
from channels.layers import BaseChannelLayer, get_channel_layer
from channels_redis import core as channels_redis


def channel_layer() -> BaseChannelLayer:
    """The project's channel layer; settings.CHANNEL_LAYERS always configures one."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("CHANNEL_LAYERS configures no default layer.")
    return layer


def channel_closed(channel: str) -> None:
    """Nothing in this process reads `channel` any more (a socket closed, an answer ended)."""
    close = getattr(channel_layer(), "close_channel", None)
    if close is not None:
        close(channel)


class _ReceiveBuffers(dict):
    """channels-redis's buffers of messages popped for this process's channels, by channel,
    made as a message for one arrives: none is kept for a channel that has closed."""

    def __init__(self, layer: "RedisChannelLayer") -> None:
        super().__init__()
        self._layer = layer

    def __missing__(self, channel: str) -> Any:
        queue = channels_redis.BoundedQueue(self._layer.capacity)
        if channel not in self._layer.closed_channels:
            self[channel] = queue
        return queue

    def __delitem__(self, channel: str) -> None:
        self.pop(channel, None)  # a closed channel's, never kept


class RedisChannelLayer(channels_redis.RedisChannelLayer):
    """channels-redis, without keeping the messages that reach a channel after it closed.

    All of a process's channels share one Redis queue; a message popped from it for another
    channel of the process waits in that channel's buffer until it is read. One for a channel
    nobody reads any more (a snapshot for a tab that closed as it subscribed, a delta sent as
    a socket left its conversation's group) waited there for the life of the process
    (channels_redis#384). A channel closed within the layer's expiry gets no buffer.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receive_buffer = _ReceiveBuffers(self)
        self.closed_channels: dict[str, float] = {}  # channel -> when it closed, oldest first

    def close_channel(self, channel: str) -> None:
        now = time.monotonic()
        self.receive_buffer.pop(channel, None)
        self.closed_channels[channel] = now
        # Older messages than the expiry are gone from Redis: their channels need no name.
        while self.closed_channels:
            name, closed_at = next(iter(self.closed_channels.items()))
            if now - closed_at < self.expiry:
                break
            del self.closed_channels[name]


class InMemoryChannelLayer(layers.InMemoryChannelLayer):
    """Channels' in-memory layer (one process, no Redis), cleaning up at most once a second.

    Channels' own looks through every channel's queue and every group's members for
    something expired at each `receive` and `group_send`. Every socket and every running
    answer waits on a channel, so at 200 answers each answer's start paid for a scan of
    about 400 channels and 200 groups (bench/README.md). Messages expire after a minute and
    memberships after a day, so a second's delay in dropping them changes nothing.
    """

    CLEAN_EVERY_SECONDS = 1.0

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._cleaned_at = float("-inf")

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at >= self.CLEAN_EVERY_SECONDS:
            self._cleaned_at = now
            super()._clean_expired()  # type: ignore[misc]  # private in the stubs
