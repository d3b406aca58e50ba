"""The channel layer's Redis restarts mid-answer, forgetting every group: nothing is lost.

Against a private redis-server (never the shared one): the answer keeps streaming upstream,
the server closes the sockets Redis forgot, and a client that reconnects and resubscribes as
the page does gets the whole answer: the text so far in conversation.state, the rest live.
"""

import asyncio

import pytest
import websockets
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from tests.resilience.servers import ChatClient, text_of
from tests.support.polling import await_for

pytestmark = pytest.mark.slow

LONG_ANSWER = 240
RECONNECTS = 40


async def resubscribe_and_stop(server, session, conversation_id, message_id) -> tuple[str, dict]:
    """What the page does: (re)connect with backoff and subscribe; then stop the answer.

    Returns the text shown (state plus live deltas, no gap, no repeat) and the done frame.
    """
    delay = 0.1
    for _ in range(RECONNECTS):
        client = ChatClient(server, session)
        try:
            await client.connect()
            await client.send({"type": "chat.subscribe", "conversation_id": conversation_id})
            state = (await client.until_type("conversation.state"))[-1]
            answer = next(m for m in state["messages"] if m["id"] == message_id)
            assert answer["status"] == "streaming"
            frames = await client.until(lambda f: f["type"] == "message.delta")  # live again
            await client.send({"type": "chat.stop", "message_id": message_id})
            frames += await client.until_type("message.done", message_id)
            return answer["content"] + text_of(frames, message_id, answer["seq"]), frames[-1]
        except (OSError, websockets.ConnectionClosed, websockets.InvalidStatus):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        finally:
            await client.close()
    raise AssertionError(f"no socket lasted until the answer stopped in {RECONNECTS} tries")


async def test_an_answer_survives_a_redis_restart(launch, session_for, private_redis, sim):
    server = launch("app", REDIS_URL=private_redis.url)
    session = session_for()
    watcher = await ChatClient(server, session).connect()
    created = await watcher.send_message(
        f"[sim:pace tps=25] [sim:long tokens={LONG_ANSWER}] Tell me a long story"
    )
    message_id, conversation_id = created["id"], created["conversation_id"]
    await watcher.until(lambda f: f["type"] == "message.delta" and f["seq"] >= 3)

    async def stored() -> dict:
        path = f"/api/conversations/{conversation_id}/"
        return (await asyncio.to_thread(server.get_json, path, session))["messages"][-1]

    private_redis.stop()
    # While Redis is down the answer goes on: its checkpoints keep growing in the database.
    down_at = len((await stored())["content"])

    async def grew_or_ended():
        answer = await stored()
        return (
            answer if len(answer["content"]) > down_at or answer["status"] != "streaming" else None
        )

    assert (await await_for(grew_or_ended, "the answer to grow"))["status"] == "streaming"
    private_redis.start()  # empty: every group membership is gone

    with pytest.raises(websockets.ConnectionClosed) as closed:  # the server closes it
        while True:
            await watcher.receive()
    assert closed.value.rcvd.code == 4012  # "service restart", as documented: not 1011
    # The page resubscribes, sees the text so far and the rest live, and stop still reaches
    # the generation (it rejoined its group).
    shown, done = await resubscribe_and_stop(server, session, conversation_id, message_id)

    answer = await stored()
    assert done["status"] == answer["status"] == "stopped"
    assert shown == answer["content"]
    assert len(answer["content"]) > down_at
    assert answer["usage"] is None or answer["usage"]["completion_tokens"] < LONG_ANSWER


async def test_the_layers_first_commands_after_a_restart_go_through(private_redis):
    """The pool's connections died with the old server; the next command retries on a new one.

    Without that, the first command after a restart fails: a delta's group_send then reaches
    no socket of another process.
    """
    layer = RedisChannelLayer(
        hosts=[{"address": private_redis.url, **settings.REDIS_LAYER_OPTIONS}]
    )
    try:
        channel = await layer.new_channel()
        await asyncio.gather(*(layer.send(channel, {"type": "before", "n": n}) for n in range(20)))
        assert {(await layer.receive(channel))["n"] for _ in range(20)} == set(range(20))
        private_redis.restart()  # the pooled connections now lead nowhere
        await layer.group_add("answers", channel)
        await layer.group_send("answers", {"type": "after"})
        assert (await layer.receive(channel))["type"] == "after"
    finally:
        await layer.close_pools()
