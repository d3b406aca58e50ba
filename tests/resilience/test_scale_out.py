"""Scale-out: two daphne processes share PostgreSQL and the channels-redis layer.

An answer started through one process is watched live from a socket on the other, with no gap
and no repeat, and a stop sent to either process stops it.
"""

import os

import pytest

from tests.databases import uses_postgres
from tests.resilience.servers import ChatClient, text_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (uses_postgres() and os.environ.get("REDIS_URL")),
        reason="scale-out runs on PostgreSQL and Redis: set DATABASE_URL=postgres://... and"
        " REDIS_URL (the CI run that uses them does)",
    ),
]

SLOW = "[sim:pace tps=25] [sim:long tokens=120]"


def stored_answer(server, session, conversation_id: int) -> dict:
    return server.get_json(f"/api/conversations/{conversation_id}/", session)["messages"][-1]


async def test_a_stream_from_one_process_is_watched_and_stopped_from_another(
    launch, session_for, sim
):
    first = launch("first", REDIS_URL=os.environ["REDIS_URL"])
    second = launch("second", REDIS_URL=os.environ["REDIS_URL"])
    session = session_for()
    on_first = await ChatClient(first, session).connect()
    on_second = await ChatClient(second, session).connect()

    # Started through the first process, watched from the second mid-stream.
    created = await on_first.send_message(f"{SLOW} Tell me about llamas")
    message_id, conversation_id = created["id"], created["conversation_id"]
    await on_first.until(lambda f: f["type"] == "message.delta" and f["seq"] >= 3)
    await on_second.send({"type": "chat.subscribe", "conversation_id": conversation_id})
    state = (await on_second.until_type("conversation.state"))[-1]
    answer = next(m for m in state["messages"] if m["id"] == message_id)
    assert answer["status"] == "streaming" and answer["seq"] >= 3
    done = await on_second.until_type("message.done", message_id)
    watched = answer["content"] + text_of(done, message_id, answer["seq"])
    await on_first.until_type("message.done", message_id)

    stored = stored_answer(first, session, conversation_id)
    assert done[-1]["status"] == stored["status"] == "complete"
    assert watched == stored["content"] == text_of(on_first.received, message_id)

    # The next answer also runs in the first process; the second one's socket stops it.
    created = await on_first.send_message(f"{SLOW} And alpacas?", conversation_id)
    message_id = created["id"]
    await on_second.until(lambda f: f["type"] == "message.delta" and f["message_id"] == message_id)
    await on_second.send({"type": "chat.stop", "message_id": message_id})
    stopped_second = (await on_second.until_type("message.done", message_id))[-1]
    frames_first = await on_first.until_type("message.done", message_id)

    stored = stored_answer(second, session, conversation_id)
    assert stopped_second["status"] == frames_first[-1]["status"] == stored["status"] == "stopped"
    assert stored["content"] == text_of(on_first.received, message_id)
    assert stored["usage"] is None or stored["usage"]["completion_tokens"] < 120
    await on_first.close()
    await on_second.close()
