"""Oversized input against a real daphne: the chat's content limit (CHAT_MAX_CONTENT_BYTES,
32 KB by default) answers with an error frame; daphne's 1 MiB frame cap is the outer guard
and drops the socket. Nothing is stored either way."""

import pytest
import websockets

from tests.resilience.servers import ChatClient

pytestmark = pytest.mark.slow

LIMIT = 32 * 1024
DAPHNE_FRAME_CAP = 1024 * 1024
SEND = {"type": "chat.send", "request_id": "big", "conversation_id": None}


async def test_content_limit_then_daphnes_frame_cap(launch, session_for, sim):
    server = launch("app")  # the default limits
    session = session_for()
    client = await ChatClient(server, session).connect()

    # Just over: the frame is read and refused. Far over: refused unread (so no request_id).
    for size, request_id in ((LIMIT + 1, "big"), (DAPHNE_FRAME_CAP // 2, None)):
        await client.send({**SEND, "content": "x" * size})
        reply = await client.receive()
        assert reply["type"] == "error" and reply["error"]["code"] == "content_too_large"
        assert reply["request_id"] == request_id
    assert server.get_json("/api/conversations/", session)["results"] == []
    assert sim.requests == []

    created = await client.send_message("é" * (LIMIT // 2))  # exactly the limit, in bytes
    await client.until_type("message.done", created["id"])

    await client.send("x" * (DAPHNE_FRAME_CAP + 1))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.receive()
    close = closed.value.rcvd
    assert close is None or close.code == 1009  # dropped, or "message too big"
    assert len(server.get_json("/api/conversations/", session)["results"]) == 1
    again = await ChatClient(server, session).connect()  # the server itself is fine
    await again.send({"type": "chat.dance"})
    assert (await again.receive())["error"]["code"] == "unknown_type"
    await again.close()
