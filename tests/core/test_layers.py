"""The in-memory channel layer: Channels' own, cleaning up once a second at most."""

from chatapp.core import layers
from chatapp.core.layers import InMemoryChannelLayer

MESSAGE = {"type": "test.message"}


async def test_expired_messages_go_at_the_first_clean_up_of_each_second(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(layers.time, "monotonic", lambda: now[0])
    layer = InMemoryChannelLayer(expiry=-1)  # every message is expired as soon as it is sent

    await layer.send("first", MESSAGE)
    await layer.group_send("nobody", MESSAGE)  # cleans up: the expired message goes
    assert "first" not in layer.channels

    await layer.send("second", MESSAGE)
    now[0] += 0.5
    await layer.group_send("nobody", MESSAGE)  # the same second: no scan
    assert "second" in layer.channels

    now[0] += 0.5
    await layer.group_send("nobody", MESSAGE)
    assert "second" not in layer.channels


async def test_messages_still_arrive():
    layer = InMemoryChannelLayer()
    await layer.group_add("group", "socket")
    await layer.group_send("group", MESSAGE)
    assert await layer.receive("socket") == MESSAGE
