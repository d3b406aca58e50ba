"""chat.send with "temporary": true starts a temporary chat."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from chatapp.chat import temporary_chats
from chatapp.chat.models import Conversation, Message, MessageStatus

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


async def until_gone(rows) -> None:
    """Wait until the queryset `rows` is empty, for at most 10 s."""
    for _ in range(200):
        if not await rows.aexists():
            return
        await asyncio.sleep(0.05)


async def test_a_temporary_chat_whose_tab_closed_before_it_was_created_is_deleted(
    connect, member, sim, settings
):
    """The page cannot delete a chat whose id it never heard: the server ends it, once its
    answer is complete and no socket follows it any more."""
    settings.CHAT_TEMPORARY_GRACE_SECONDS = 0
    kept = await connect(member)
    saved = await kept.send_message("Keep this one")
    closing = await connect(member)
    frame = {"type": "chat.send", "request_id": "t", "conversation_id": None, "temporary": True}
    await closing.send({**frame, "content": "Just between us"})
    await closing.communicator.disconnect()
    await until_gone(Conversation.objects.filter(temporary=True))
    assert [c.pk async for c in Conversation.objects.all()] == [saved["conversation_id"]]
    assert await Message.objects.filter(status=MessageStatus.STREAMING).acount() == 0
    deleted = await kept.until_type("conversation.deleted")
    assert deleted[-1]["conversation_id"] != saved["conversation_id"]


async def test_a_temporary_chat_another_socket_follows_is_kept(connect, member, sim, settings):
    settings.CHAT_TEMPORARY_GRACE_SECONDS = 0
    first = await connect(member)
    ids = await first.send_message("Just between us", temporary=True)
    await first.until_type("message.done", ids["message_id"])
    second = await connect(member)
    await second.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    await second.until_type("conversation.state")
    await first.communicator.disconnect()
    await temporary_chats.settled()
    assert await Conversation.objects.filter(pk=ids["conversation_id"]).aexists()
    # The last one to leave ends it.
    await second.communicator.disconnect()
    await until_gone(Conversation.objects.filter(pk=ids["conversation_id"]))
    assert not await Conversation.objects.filter(pk=ids["conversation_id"]).aexists()


async def test_a_temporary_chat_its_socket_moved_away_from_is_deleted(
    connect, member, sim, settings
):
    """The page deletes a chat it leaves; if that request is lost, the server still ends it."""
    settings.CHAT_TEMPORARY_GRACE_SECONDS = 0
    socket = await connect(member)
    saved = await socket.send_message("Keep this one")
    await socket.until_type("message.done", saved["message_id"])
    ids = await socket.send_message("Just between us", temporary=True)
    await socket.until_type("message.done", ids["message_id"])
    await socket.send({"type": "chat.subscribe", "conversation_id": saved["conversation_id"]})
    await until_gone(Conversation.objects.filter(temporary=True))
    assert [c.pk async for c in Conversation.objects.all()] == [saved["conversation_id"]]


async def test_a_temporary_chat_a_socket_switched_branch_into_is_deleted_when_it_leaves(
    connect, member, sim, settings
):
    """chat.switch follows the conversation as chat.subscribe does: the last socket to leave
    a temporary chat ends it, whichever of the two brought it there."""
    settings.CHAT_TEMPORARY_GRACE_SECONDS = 0
    first = await connect(member)
    ids = await first.send_message("Just between us", temporary=True)
    await first.until_type("message.done", ids["message_id"])
    second = await connect(member)
    await second.send({"type": "chat.switch", "message_id": ids["message_id"]})
    await second.until_type("conversation.state")
    await first.communicator.disconnect()
    await temporary_chats.settled()
    assert await Conversation.objects.filter(pk=ids["conversation_id"]).aexists()
    await second.communicator.disconnect()
    await until_gone(Conversation.objects.filter(pk=ids["conversation_id"]))
    assert not await Conversation.objects.filter(pk=ids["conversation_id"]).aexists()
