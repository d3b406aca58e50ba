"""Stop, subscribe mid-stream, two tabs, upstream failures."""

import pytest

from chatapp.chat.models import Message

from .conftest import joined_text

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = "[sim:long tokens=400] [sim:pace tps=40]"


async def test_stop_keeps_the_partial_answer(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message(f"Count slowly {SLOW}")
    message_id = ids["message_id"]
    await socket.until_type("message.delta", message_id)
    await socket.send({"type": "chat.stop", "message_id": message_id})
    frames = await socket.until_type("message.done", message_id)
    assert frames[-1]["status"] == "stopped"
    shown = joined_text(socket.received, message_id)
    message = await Message.objects.aget(pk=message_id)
    assert message.status == "stopped"
    assert message.content == shown
    assert 0 < message.seq < 400
    assert sim.active_streams == 0 or await _streams_end(sim)


async def _streams_end(sim) -> bool:
    import asyncio

    for _ in range(100):
        if sim.active_streams == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_subscribe_mid_stream_has_no_gap_and_no_duplicate(connect, member, sim):
    first = await connect(member)
    ids = await first.send_message(f"Long one {SLOW}")
    message_id = ids["message_id"]
    await first.receive_until(lambda f: f["type"] == "message.delta" and f["seq"] >= 5)

    second = await connect(member)
    await second.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = await second.receive()
    assert state["type"] == "conversation.state"
    streaming = [m for m in state["messages"] if m["id"] == message_id][0]
    assert streaming["status"] == "streaming"
    assert streaming["seq"] >= 5
    await first.send({"type": "chat.stop", "message_id": message_id})
    rest = await second.until_type("message.done", message_id)
    deltas = [f for f in rest if f["type"] == "message.delta"]
    assert [f["seq"] for f in deltas] == list(
        range(streaming["seq"] + 1, streaming["seq"] + 1 + len(deltas))
    )
    message = await Message.objects.aget(pk=message_id)
    assert streaming["content"] + joined_text(rest, message_id) == message.content
    await first.until_type("message.done", message_id)
    assert joined_text(first.received, message_id) == message.content
