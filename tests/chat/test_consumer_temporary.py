"""chat.send with "temporary": true starts a temporary chat."""

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from chatapp.chat.models import Conversation

pytestmark = pytest.mark.django_db(transaction=True)


async def test_temporary_send_starts_a_temporary_chat_kept_out_of_the_list(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message("Just between us", temporary=True)
    await socket.until_type("message.done", ids["message_id"])
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.temporary is True
    kept = await socket.send_message("Keep this one")
    await socket.until_type("message.done", kept["message_id"])
    # A follow-up in the temporary chat needs no flag: it stays temporary.
    more = await socket.send_message("And more", conversation_id=conversation.pk)
    await socket.until_type("message.done", more["message_id"])
    await conversation.arefresh_from_db()
    assert conversation.temporary is True

    def listed():
        client = Client()
        client.force_login(member)
        return [c["id"] for c in client.get("/api/conversations/").json()["results"]]

    assert await sync_to_async(listed)() == [kept["conversation_id"]]


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "chat.send", "content": "Hi", "temporary": "yes"},
        {"type": "chat.send", "content": "Hi", "temporary": 1},
        {"type": "chat.send", "content": "Hi", "temporary": True, "conversation_id": 1},
        {"type": "chat.edit", "content": "Hi", "temporary": True, "message_id": 1},
    ],
)
async def test_bad_temporary_flags_are_refused(connect, member, sim, frame):
    socket = await connect(member)
    error = await socket.expect_error(frame)
    assert (error["error"]["code"], error["error"]["field"]) == ("invalid_frame", "temporary")
    assert await Conversation.objects.acount() == 0
    assert sim.requests == []
