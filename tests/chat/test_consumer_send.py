import pytest

from chatapp.chat.models import Conversation, Message
from chatapp.core.metrics import TIME_TO_FIRST_TOKEN, TOKENS_RELAYED, WEBSOCKET_CONNECTIONS

from .conftest import MODEL, joined_text

pytestmark = pytest.mark.django_db(transaction=True)


async def test_send_streams_the_answer_and_stores_it(connect, member, sim):
    socket = await connect(member)
    await socket.send(
        {"type": "chat.send", "request_id": "r1", "conversation_id": None, "content": "Hi there"}
    )
    created = await socket.receive()
    assert created["type"] == "conversation.created"
    assert created["request_id"] == "r1"
    assert created["conversation"]["title"] == "Hi there"
    question = await socket.receive()
    answer = await socket.receive()
    assert question["type"] == answer["type"] == "message.created"
    assert question["message"]["role"] == "user"
    assert answer["message"]["role"] == "assistant"
    assert answer["message"]["status"] == "streaming"
    message_id = answer["message"]["id"]

    frames = await socket.until_type("message.done", message_id)
    deltas = [f for f in frames if f["type"] == "message.delta"]
    assert [f["seq"] for f in deltas] == list(range(1, len(deltas) + 1))
    done = frames[-1]
    assert done["status"] == "complete"
    assert done["usage"]["completion_tokens"] > 0

    message = await Message.objects.aget(pk=message_id)
    assert done["model"] == message.model != ""  # the page needs no reload to show it
    assert message.content == joined_text(frames, message_id)
    assert message.status == "complete"
    assert done["model"] == message.model == MODEL  # the page needs no reload to show it
    assert message.seq == len(deltas)
    conversation = await Conversation.objects.aget(pk=created["conversation"]["id"])
    assert conversation.title == "Hi there"


def sample(metric, suffix: str = "") -> float:
    name = metric._name + suffix
    return sum(s.value for m in metric.collect() for s in m.samples if s.name == name)


async def test_streams_are_measured(connect, member, sim):
    started = sample(TIME_TO_FIRST_TOKEN, "_count")
    relayed = sample(TOKENS_RELAYED, "_total")
    socket = await connect(member)
    assert sample(WEBSOCKET_CONNECTIONS) >= 1
    ids = await socket.send_message("Measure me")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert sample(TIME_TO_FIRST_TOKEN, "_count") == started + 1
    assert sample(TOKENS_RELAYED, "_total") == relayed + done["usage"]["completion_tokens"]


async def test_a_message_longer_than_the_models_window_is_refused_before_it_goes_upstream(
    connect, member, sim, settings
):
    """History keeps the newest question however long it is: one the model cannot read is
    refused here, with nothing written, rather than by the model server."""
    settings.LLAMA_MODEL_CONTEXT = {MODEL: 4096}
    socket = await connect(member)
    frame = {
        "type": "chat.send",
        "request_id": "r1",
        "conversation_id": None,
        "content": "word " * 2000,  # about 2,500 tokens, and 2,048 for the answer
    }
    error = (await socket.expect_error(frame))["error"]
    assert (error["code"], error["field"]) == ("content_too_large", "content")
    assert "2,504 tokens" in error["message"] and f"4,096 {MODEL} reads" in error["message"]
    assert not await Conversation.objects.aexists()
    assert not await Message.objects.aexists()
    assert sim.requests == []
    ids = await socket.send_message("word " * 1500)  # about 1,900 tokens: it fits
    assert (await socket.until_type("message.done", ids["message_id"]))[-1]["status"] == "complete"
    assert len(sim.requests) == 1
