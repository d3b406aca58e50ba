"""Upstream failures: before any text, after some text, and retries."""

import asyncio

import pytest

from chatapp.chat import generation
from chatapp.chat.models import Message

from .conftest import joined_text

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "directive, code",
    [("[sim:fault=401]", "auth_failed"), ("[sim:fault=429 retry_after=0]", "rate_limited")],
)
async def test_failure_before_text_keeps_the_question_ready_for_retry(
    connect, member, sim, directive, code
):
    socket = await connect(member)
    ids = await socket.send_message(f"Hello {directive}")
    message_id = ids["message_id"]
    frames = await socket.until_type("message.error", message_id)
    error = frames[-1]["error"]
    assert error["code"] == code
    assert error["message"]
    assert isinstance(error["retryable"], bool)
    assert not [f for f in frames if f["type"] in ("message.delta", "message.done")]
    question = await Message.objects.aget(pk=ids["user_message_id"])
    assert question.content == f"Hello {directive}"
    answer = await Message.objects.aget(pk=message_id)
    assert (answer.status, answer.content, answer.error_code) == ("error", "", code)

    # Regenerating the failed answer asks again with the same question.
    sim.reset()
    await socket.send({"type": "chat.regenerate", "message_id": message_id})
    created = await socket.until_type("message.created")
    assert created[-1]["replaces"] == message_id
    new_id = created[-1]["message"]["id"]
    assert (await socket.until_type("message.error", new_id))[-1]["error"]["code"] == code
    assert sim.requests[-1]["messages"][-1]["content"] == f"Hello {directive}"
    assert not await Message.objects.filter(pk=message_id).aexists()


async def test_failure_after_text_keeps_the_partial_answer(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message("Go [sim:fault=cut after=5]")
    message_id = ids["message_id"]
    frames = await socket.until_type("message.done", message_id)
    kinds = [f["type"] for f in frames]
    assert kinds.index("message.error") < kinds.index("message.done")
    assert "message.delta" in kinds
    assert frames[-1]["status"] == "interrupted"
    answer = await Message.objects.aget(pk=message_id)
    assert answer.status == "interrupted"
    assert answer.content == joined_text(frames, message_id)
    assert answer.content
    assert answer.error_code == "interrupted"


async def test_retries_are_announced_then_the_answer_streams(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message("Again [sim:fault=503 times=1 retry_after=0]")
    message_id = ids["message_id"]
    frames = await socket.until_type("message.done", message_id)
    retrying = [f for f in frames if f["type"] == "message.retrying"]
    assert len(retrying) == 1
    assert retrying[0]["attempt"] == 2
    assert retrying[0]["message_id"] == message_id
    assert frames[-1]["status"] == "complete"
    assert len(sim.requests) == 2


async def test_a_retry_notice_refreshes_the_heartbeat(connect, member, sim, monkeypatch):
    """While the client waits to retry, another process's reaper must see the answer alive."""
    monkeypatch.setattr(generation, "HEARTBEAT_SECONDS", 3600)  # no periodic heartbeat here
    socket = await connect(member)
    ids = await socket.send_message("Later [sim:fault=503 times=1 retry_after=30]")
    message_id = ids["message_id"]
    await socket.until_type("message.retrying", message_id)

    async def refreshed():
        # The row's first heartbeat is taken just before it is created; a later one is a refresh.
        message = await Message.objects.aget(pk=message_id)
        return message.heartbeat_at > message.created_at

    for _ in range(100):  # the checkpoint is written in the background
        if await refreshed():
            break
        await asyncio.sleep(0.05)
    assert await refreshed()
    await socket.send({"type": "chat.stop", "message_id": message_id})
    assert (await socket.until_type("message.done", message_id))[-1]["status"] in (
        "stopped",
        "error",
    )


async def test_a_page_that_reconnects_while_the_answer_waits_to_retry_is_told_so(
    connect, member, sim
):
    """The retry notice is part of where the answer stands: a reloaded page shows it too."""
    first = await connect(member)
    ids = await first.send_message("Later [sim:fault=503 times=1 retry_after=30]")
    message_id = ids["message_id"]
    announced = (await first.until_type("message.retrying", message_id))[-1]

    reloaded = await connect(member)
    await reloaded.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = await reloaded.receive()
    assert state["type"] == "conversation.state"
    assert (state["messages"][-1]["id"], state["messages"][-1]["status"]) == (
        message_id,
        "streaming",
    )
    notice = await reloaded.receive()
    assert notice["type"] == "message.retrying"
    assert (notice["message_id"], notice["attempt"], notice["code"]) == (
        message_id,
        announced["attempt"],
        announced["code"],
    )
    assert 0 <= notice["delay"] <= announced["delay"]  # what is left of the wait

    await first.send({"type": "chat.stop", "message_id": message_id})
    await reloaded.until_type("message.done", message_id)


async def test_a_page_that_reconnects_after_the_retry_streamed_gets_no_notice(connect, member, sim):
    first = await connect(member)
    ids = await first.send_message(
        "Again [sim:fault=503 times=1 retry_after=0] [sim:long tokens=400]"
    )
    message_id = ids["message_id"]
    await first.until_type("message.delta", message_id)

    reloaded = await connect(member)
    await reloaded.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    frames = await reloaded.until_type("message.done", message_id)
    assert frames[0]["type"] == "conversation.state"
    assert not [f for f in frames if f["type"] == "message.retrying"]


async def test_retrying_an_earlier_failed_answer_keeps_the_turns_after_it(connect, member, sim):
    socket = await connect(member)
    failed = await socket.send_message("First [sim:fault=400 times=1]")
    await socket.until_type("message.error", failed["message_id"])
    conversation_id = failed["conversation_id"]
    later = await socket.send_message("Later question", conversation_id=conversation_id)
    await socket.until_type("message.done", later["message_id"])

    await socket.send({"type": "chat.regenerate", "message_id": failed["message_id"]})
    created = (await socket.until_type("message.created"))[-1]
    assert created["replaces"] == failed["message_id"]
    # The failed answer stays as a version: the question and answer below it are kept.
    assert created["message"]["sibling_ids"] == [failed["message_id"], created["message"]["id"]]
    await socket.until_type("message.done", created["message"]["id"])
    kept = Message.objects.filter(conversation_id=conversation_id).values_list("id", flat=True)
    assert {failed["message_id"], later["user_message_id"], later["message_id"]} <= {
        message_id async for message_id in kept
    }
