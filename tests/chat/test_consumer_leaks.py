"""What a server process keeps for a socket or an answer goes once they are gone: the counts,
the registries and the channel-layer groups are back to where they started, however the
socket ended."""

import asyncio
from contextlib import suppress

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings

from chatapp.accounts.sockets import user_group
from chatapp.asgi import application
from chatapp.chat import fanout
from chatapp.chat.actions import replies
from chatapp.chat.consumers import open_sockets
from chatapp.chat.groups import conversation_group
from chatapp.core.metrics import WEBSOCKET_CONNECTIONS
from tests.support.polling import await_for

from .conftest import FRAME_TIMEOUT, ChatSocket, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

SOCKETS = 5


def open_count() -> float:
    return sum(s.value for m in WEBSOCKET_CONNECTIONS.collect() for s in m.samples)


async def group_members(group: str) -> list:
    """The channels in a channel-layer group, on whichever layer the suite runs."""
    layer = get_channel_layer()
    if hasattr(layer, "_group_key"):  # channels-redis: a sorted set per group
        connection = layer.connection(layer.consistent_hash(group))
        return await connection.zrange(layer._group_key(group), 0, -1)
    return list(layer.groups.get(group, {}))


async def left(group: str) -> bool:
    return await group_members(group) == []


async def communicator_for(user) -> WebsocketCommunicator:
    cookie = await database_sync_to_async(session_cookie)(user)
    headers = [
        (b"origin", b"http://127.0.0.1"),
        (b"host", b"127.0.0.1"),
        (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()),
    ]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=FRAME_TIMEOUT)
    assert connected
    return communicator


async def following(user, conversation_id: int) -> WebsocketCommunicator:
    """A socket of the user that has subscribed to the conversation."""
    communicator = await communicator_for(user)
    socket = ChatSocket(communicator)
    await socket.send({"type": "chat.subscribe", "conversation_id": conversation_id})
    await socket.until_type("conversation.state")
    return communicator


async def test_sockets_daphne_kills_leave_nothing_behind(connect, member, sim, settings):
    """daphne cancels a socket's consumer that has not ended within its close timeout (a
    frame's handler still waiting on the database, say) and never calls its disconnect: the
    socket's place among the user's sockets, the gauge and its groups go all the same."""
    settings.CHAT_MAX_SOCKETS_PER_USER = SOCKETS
    first = await connect(member)
    ids = await first.send_message("Hello")
    await first.until_type("message.done", ids["message_id"])
    conversation_id = ids["conversation_id"]
    await first.communicator.disconnect()
    gauge = open_count()

    for _ in range(SOCKETS):
        communicator = await following(member, conversation_id)
        communicator.future.cancel()  # what daphne's application checker does
        with suppress(asyncio.CancelledError):
            await communicator.future

    assert member.pk not in open_sockets()
    assert open_count() == gauge
    assert fanout.followers().of(conversation_id) == []
    await await_for(lambda: left(user_group(member.pk)), "the user's group to be left")
    await await_for(lambda: left(conversation_group(conversation_id)), "its group to be left")
    # The user may open as many sockets as before.
    again = await connect(member)
    reply = await again.expect_error({"type": "chat.subscribe", "conversation_id": 999_999})
    assert reply["error"]["code"] == "not_found"


async def test_sockets_ended_by_a_failing_handler_leave_nothing_behind(member, settings):
    """A message a socket's consumer cannot handle (one a newer release sends the user's
    group during a rolling upgrade) ends the socket with an error: what it held goes."""
    settings.CHAT_MAX_SOCKETS_PER_USER = SOCKETS
    gauge = open_count()
    for _ in range(SOCKETS):
        communicator = await communicator_for(member)
        await get_channel_layer().group_send(user_group(member.pk), {"type": "user.renamed"})
        with pytest.raises(ValueError, match="No handler for message type user.renamed"):
            await communicator.wait(FRAME_TIMEOUT)

    assert member.pk not in open_sockets()
    assert open_count() == gauge
    await await_for(lambda: left(user_group(member.pk)), "the user's group to be left")
    communicator = await communicator_for(member)
    await communicator.disconnect()


async def test_messages_for_closed_sockets_are_not_kept(connect, member, owner, sim):
    """channels-redis keeps a message that reaches a channel of this process nobody reads
    any more (an answer's snapshot for a tab closed as it subscribed, a delta sent as the
    socket left its conversation's group) for as long as the process lives."""
    if not fanout.spans_processes():
        pytest.skip("only the Redis layer buffers messages for this process's channels")
    layer = get_channel_layer()
    streaming = await connect(member)
    ids = await streaming.send_message("Take your time [sim:long tokens=400] [sim:pace tps=40]")
    closed = []
    for _ in range(SOCKETS):
        communicator = await communicator_for(owner)
        (channel,) = await group_members(user_group(owner.pk))
        await communicator.disconnect()
        await await_for(lambda: left(user_group(owner.pk)), "the closed socket to leave")
        # The answer's snapshot for a subscribe the tab sent just before it closed.
        await replies.request_snapshot(ids["message_id"], channel.decode())
        closed.append(channel.decode())
    # The answer handles its requests in order: once this one's snapshot is here, those
    # for the closed sockets have reached this process too.
    probe = await layer.new_channel()
    await replies.request_snapshot(ids["message_id"], probe)
    assert (await layer.receive(probe))["type"] == "generation.snapshot"
    assert [channel for channel in closed if channel in layer.receive_buffer] == []
