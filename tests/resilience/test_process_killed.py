"""The process running an answer is killed (SIGKILL): no answer stays "streaming" forever.

Another server process (here: the restarted one) runs the reaper at start-up and then
periodically; it marks the answer whose heartbeat stopped interrupted, keeping the text of the
last checkpoint, and tells the sockets watching the conversation.
"""

import asyncio

import pytest

from tests.resilience.servers import ChatClient
from tests.support.polling import await_for

pytestmark = pytest.mark.slow

# The shortest staleness the settings allow (with one attempt and a short first-token wait);
# the reaper looks every second.
REAPER = {
    "CHAT_STALE_GENERATION_SECONDS": "15",
    "CHAT_REAPER_INTERVAL_SECONDS": "1",
    "LLAMA_FIRST_TOKEN_TIMEOUT": "10",
    "LLAMA_MAX_ATTEMPTS": "1",
}


async def test_a_killed_servers_answer_is_marked_interrupted_with_its_text(
    launch, session_for, sim
):
    first = launch("first", **REAPER)
    session = session_for()
    client = await ChatClient(first, session).connect()
    created = await client.send_message("[sim:pace tps=20] [sim:long tokens=2000] Go on and on")
    message_id, conversation_id = created["id"], created["conversation_id"]

    async def stored(server) -> dict:
        path = f"/api/conversations/{conversation_id}/"
        data = await asyncio.to_thread(server.get_json, path, session)
        return next(m for m in data["messages"] if m["id"] == message_id)

    async def checkpointed():
        answer = await stored(first)
        return answer if answer["content"] else None

    await await_for(checkpointed, "a checkpoint of the answer")
    first.kill()
    await client.close()

    second = launch("second", **REAPER)
    orphan = await stored(second)
    # Usually nobody has said otherwise yet. The reaper's first run is at the health check
    # that ends start-up, so a start-up slower than the staleness window finds it already
    # interrupted; either way the checkpointed text is there.
    assert orphan["status"] in ("streaming", "interrupted")
    assert orphan["content"]
    watcher = await ChatClient(second, session).connect()
    await watcher.send({"type": "chat.subscribe", "conversation_id": conversation_id})
    state = (await watcher.until_type("conversation.state"))[-1]
    shown = next(m for m in state["messages"] if m["id"] == message_id)
    assert shown["content"] == orphan["content"]
    if shown["status"] == "streaming":  # usual: the heartbeat is not stale yet, the page waits
        frames = await watcher.until_type("message.done", message_id)
        error = next(f for f in frames if f["type"] == "message.error")["error"]
        assert error["code"] == "interrupted" and error["retryable"] is True
        assert frames[-1]["status"] == "interrupted"
    else:  # a slow start-up: the reaper's first run found it stale
        assert shown["status"] == "interrupted"
    reaped = await stored(second)
    assert reaped["status"] == "interrupted"
    assert reaped["content"] == orphan["content"]  # the checkpointed text survived
    await watcher.close()
    # The killed process's upstream request died with it.
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close")
