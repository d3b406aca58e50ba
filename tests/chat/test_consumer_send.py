import pytest

from chatapp.chat.models import Conversation, Message

from .conftest import joined_text

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
    assert message.content == joined_text(frames, message_id)
    assert message.status == "complete"
    assert message.seq == len(deltas)
    conversation = await Conversation.objects.aget(pk=created["conversation"]["id"])
    assert conversation.title == "Hi there"
