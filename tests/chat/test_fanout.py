"""Fanout: this process's sockets get an answer's frames directly, others' through the layer."""

import asyncio
import gc
import time

import pytest
from channels.layers import get_channel_layer

from chatapp.chat import fanout
from chatapp.chat.generation import COALESCE_SECONDS, MAX_COALESCE_SECONDS, RUNNING, Coalescing
from chatapp.chat.groups import conversation_group

SLOW = "[sim:long tokens=60] [sim:pace tps=60]"


def text_after(frames: list[dict], message_id: int, seq: int = 0) -> str:
    """The deltas after seq joined, checking that each seq comes once and in order."""
    deltas = [f for f in frames if f["type"] == "message.delta" and f["message_id"] == message_id]
    deltas = [f for f in deltas if f["seq"] > seq]
    assert [f["seq"] for f in deltas] == list(range(seq + 1, seq + 1 + len(deltas)))
    return "".join(f["text"] for f in deltas)


@pytest.mark.django_db(transaction=True)
async def test_sockets_here_get_each_frame_once_and_other_processes_get_it_by_the_layer(
    connect, member, sim, monkeypatch
):
    layer = get_channel_layer()
    sent_to_groups: list[tuple[str, dict]] = []
    group_send = layer.group_send

    async def recording_group_send(group: str, message: dict) -> None:
        sent_to_groups.append((group, message))
        await group_send(group, message)

    monkeypatch.setattr(layer, "group_send", recording_group_send)
    first, second = await connect(member), await connect(member)
    ids = await first.send_message(f"Two tabs {SLOW}")
    message_id, conversation_id = ids["message_id"], ids["conversation_id"]
    await second.send({"type": "chat.subscribe", "conversation_id": conversation_id})
    state = (await second.until_type("conversation.state"))[-1]
    seen = next(m for m in state["messages"] if m["id"] == message_id)
    mine = await first.until_type("message.done", message_id)
    theirs = await second.until_type("message.done", message_id)

    # Every delta once, in order, on both sockets.
    assert seen["content"] + text_after(theirs, message_id, seen["seq"]) == text_after(
        first.received, message_id
    )
    deltas = [f for f in mine if f["type"] == "message.delta"]
    wrapped = [m for g, m in sent_to_groups if g == conversation_group(conversation_id)]
    if fanout.spans_processes():  # Redis: no other process follows, so no delta goes there
        assert {m["event"]["type"] for m in wrapped} == {"message.created", "message.done"}
        assert {m["origin"] for m in wrapped} == {fanout.ORIGIN}
    else:  # in memory: one process, nothing goes through the layer
        assert wrapped == []
    assert deltas and mine[-1]["status"] == theirs[-1]["status"] == "complete"


@pytest.mark.django_db(transaction=True)
async def test_a_subscribe_sends_the_state_first_while_the_layer_is_slow_to_add_it(
    connect, member, sim, monkeypatch
):
    """Frames of an answer in this process arrive as soon as the socket follows; joining the
    layer's group takes an await (Redis): they wait behind the state all the same."""
    first, second = await connect(member), await connect(member)
    ids = await first.send_message(f"Slow join {SLOW}")
    message_id = ids["message_id"]
    await first.receive_until(lambda f: f["type"] == "message.delta" and f["seq"] >= 3)
    listed = await second.until_type("conversation.created")  # the other tab's list shows it
    assert listed[-1]["request_id"] is None
    layer = get_channel_layer()
    group_add = layer.group_add

    async def slow_group_add(group: str, channel: str) -> None:
        await asyncio.sleep(0.3)  # several deltas at 60 tokens/s
        await group_add(group, channel)

    monkeypatch.setattr(fanout, "spans_processes", lambda: True)
    monkeypatch.setattr(layer, "group_add", slow_group_add)
    await second.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = await second.receive()
    assert state["type"] == "conversation.state", state
    seen = next(m for m in state["messages"] if m["id"] == message_id)
    rest = await second.until_type("message.done", message_id)
    mine = await first.until_type("message.done", message_id)
    assert seen["content"] + text_after(rest, message_id, seen["seq"]) == text_after(
        first.received, message_id
    )
    assert mine[-1]["status"] == rest[-1]["status"] == "complete"


def test_a_layer_message_from_this_process_is_dropped_and_one_from_elsewhere_relayed():
    event = {"type": "message.done", "conversation_id": 1, "message_id": 2}
    ours = {"type": fanout.WRAPPED, "origin": fanout.ORIGIN, "event": event}
    theirs = {"type": fanout.WRAPPED, "origin": "another-process", "event": event}
    assert fanout.from_elsewhere(ours) is None
    assert fanout.from_elsewhere(theirs) == event


class Socket:
    async def relay(self, event: dict, text: str | None = None) -> None:
        pass


def test_the_registry_lists_a_conversation_s_sockets_until_they_leave_or_are_collected():
    registry = fanout.Followers()
    first, second, elsewhere = Socket(), Socket(), Socket()
    registry.follow(first, 1)
    registry.follow(second, 1)
    registry.follow(elsewhere, 2)
    assert registry.of(1) == [first, second] and registry.of(2) == [elsewhere]

    registry.leave(first, 1)
    registry.follow(second, 1)  # once, however often it follows
    assert registry.of(1) == [second]

    del second  # gone without leaving: the last reference to it
    gc.collect()
    assert registry.of(1) == [] and registry.of(2) == [elsewhere]
    assert registry.of(3) == []
    registry.leave(elsewhere, 2)
    assert registry.of(2) == [] and not registry._by_conversation


def test_frames_gather_longer_while_the_loop_lags_and_never_past_the_bound():
    coalescing = Coalescing()
    assert coalescing.window() == COALESCE_SECONDS
    for _ in range(100):  # sleeps overrun by 1 ms: the loop keeps up
        coalescing.observe(COALESCE_SECONDS, COALESCE_SECONDS + 0.001)
    assert coalescing.window() == COALESCE_SECONDS
    for _ in range(100):  # by 15 ms: about twice that
        coalescing.observe(COALESCE_SECONDS, COALESCE_SECONDS + 0.015)
    assert 0.025 < coalescing.window() < 0.031
    for _ in range(100):  # by a whole second: the bound
        coalescing.observe(COALESCE_SECONDS, 1.0)
    assert coalescing.window() == MAX_COALESCE_SECONDS
    for _ in range(100):  # and back once the loop keeps up again
        coalescing.observe(COALESCE_SECONDS, COALESCE_SECONDS)
    assert coalescing.window() == COALESCE_SECONDS


async def test_one_probe_measures_the_loop_lag_while_answers_run_and_stops_after(monkeypatch):
    coalescing = Coalescing()
    monkeypatch.setitem(RUNNING, -1, object())  # an answer runs in this process
    coalescing.measure()
    probe = coalescing._probe
    coalescing.measure()
    assert coalescing._probe is probe  # one per event loop
    await asyncio.sleep(0.02)
    time.sleep(0.2)  # something holds the loop: the probe's sleep overruns
    await asyncio.sleep(0.03)
    assert coalescing.lag > 0.005
    RUNNING.pop(-1)
    await asyncio.wait_for(probe, 5)  # no answer left: the probe ends


async def test_deltas_go_on_the_layer_only_while_another_process_follows(monkeypatch):
    answers: list[asyncio.Future[bool]] = []

    async def followed_elsewhere(conversation_id: int) -> bool:
        answers.append(asyncio.get_running_loop().create_future())
        return await answers[-1]

    monkeypatch.setattr(fanout, "followed_elsewhere", followed_elsewhere)
    monkeypatch.setattr(fanout, "is_ours", lambda channel: channel.startswith("specific.here!"))
    elsewhere = fanout.Elsewhere()
    assert elsewhere.followed(7)  # not streamed here: its events always go out

    starting = asyncio.create_task(elsewhere.start(7))
    await asyncio.sleep(0)
    answers[0].set_result(False)  # the layer's group: nobody elsewhere
    await starting
    assert not elsewhere.followed(7)

    elsewhere.follower_arrived(7, "specific.here!socket")  # a socket of this process
    assert not elsewhere.followed(7)

    checking = asyncio.create_task(elsewhere._check(7))
    await asyncio.sleep(0)
    elsewhere.follower_arrived(7, "specific.there!socket")  # asks for a snapshot meanwhile
    assert elsewhere.followed(7)
    answers[1].set_result(False)  # asked before it arrived: does not count
    await checking
    assert elsewhere.followed(7)

    checking = asyncio.create_task(elsewhere._check(7))
    await asyncio.sleep(0)
    answers[2].set_result(False)  # it left
    await checking
    assert not elsewhere.followed(7)

    checking = asyncio.create_task(elsewhere._check(7))
    await asyncio.sleep(0)
    answers[3].set_exception(ConnectionError("layer down"))  # in doubt: publish
    await checking
    assert elsewhere.followed(7)

    elsewhere.end(7)
    assert elsewhere.followed(7)
    elsewhere._task.cancel()


@pytest.mark.skipif(not fanout.spans_processes(), reason="the layer's groups are Redis's")
async def test_the_layer_group_tells_channels_of_other_processes_from_ours():
    layer = get_channel_layer()
    group = conversation_group(424242)
    ours = await layer.new_channel()
    theirs = "specific.0123456789abcdef0123456789abcdef!socket"
    try:
        await layer.group_add(group, ours)
        assert fanout.is_ours(ours) and not fanout.is_ours(theirs)
        assert not await fanout.followed_elsewhere(424242)
        await layer.group_add(group, theirs)
        assert await fanout.followed_elsewhere(424242)
    finally:
        await layer.group_discard(group, ours)
        await layer.group_discard(group, theirs)
