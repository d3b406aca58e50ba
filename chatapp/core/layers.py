import time

from channels import layers
from channels.layers import BaseChannelLayer, get_channel_layer


def channel_layer() -> BaseChannelLayer:
    """The project's channel layer; settings.CHANNEL_LAYERS always configures one."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("CHANNEL_LAYERS configures no default layer.")
    return layer


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
