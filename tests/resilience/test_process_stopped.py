"""The process running an answer is stopped (SIGTERM: a deploy, a restart, `docker stop`).

Before it exits, it ends the answer as interrupted with all of its text saved and says so to
the sockets still open, where a killed process (test_process_killed) leaves the text of its
last checkpoint, up to a second behind, for another process's reaper to find.
"""

import asyncio

import pytest
import websockets

from tests.resilience.servers import ChatClient, text_of
from tests.support.polling import await_for

pytestmark = pytest.mark.slow


async def test_a_stopped_servers_answer_is_saved_with_every_token_it_sent(launch, session_for, sim):
    server = launch("stopped")
    session = session_for()
    client = await ChatClient(server, session).connect()
    created = await client.send_message("[sim:pace tps=40] [sim:long tokens=4000] Go on and on")
    message_id, conversation_id = created["id"], created["conversation_id"]
    await client.until(lambda f: f["type"] == "message.delta" and f["seq"] >= 30)

    server.process.terminate()
    with pytest.raises(websockets.ConnectionClosed):  # read what it sends until it closes
        while True:
            await client.receive()
    assert await asyncio.to_thread(server.process.wait, 30) == 0
    shown = text_of(client.received, message_id)
    done = [f for f in client.received if f["type"] == "message.error"]
    assert [(f["error"]["code"], f["error"]["retryable"]) for f in done] == [("interrupted", True)]
    assert "server restarted" in done[0]["error"]["message"]

    after = launch("after")
    path = f"/api/conversations/{conversation_id}/"
    data = await asyncio.to_thread(after.get_json, path, session)
    saved = next(m for m in data["messages"] if m["id"] == message_id)
    assert saved["status"] == "interrupted"
    assert saved["content"] == shown  # every token a socket was sent, none lost
    assert saved["error"] == {**done[0]["error"], "help_url": None}  # as the socket said it
    # The stopped process closed its upstream request on its way out.
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close")
