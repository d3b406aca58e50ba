"""The process running an answer is killed (SIGKILL): no answer stays "streaming" forever.

Another server process (here: the restarted one) runs the reaper at start-up and then
periodically; it marks the answer whose heartbeat stopped interrupted, keeping the text of the
last checkpoint, and tells the sockets watching the conversation.
"""

import asyncio

import pytest

from tests.resilience.servers import ChatClient, manage, server_env
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


def user_screening_questions(env: dict[str, str], username: str) -> str:
    """A user whose personal team blocks questions Llama Guard flags; their session cookie."""
    code = (
        "from django.conf import settings\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.test import Client\n"
        "from chatapp.teams.actions import ensure_personal_team\n"
        "from chatapp.teams.models import TeamPolicy\n"
        f"user = get_user_model().objects.create_user({username!r}, password='pw')\n"
        "team = ensure_personal_team(user)\n"
        "TeamPolicy.objects.update_or_create(team=team, defaults={'safety_input': 'block'})\n"
        "client = Client()\n"
        "client.force_login(user)\n"
        "print(client.cookies[settings.SESSION_COOKIE_NAME].value)\n"
    )
    return manage(env, "shell", "-v", "0", "-c", code).strip().splitlines()[-1]


async def test_a_question_killed_before_its_verdict_never_goes_upstream(
    launch, server_database, sim
):
    """Killed while Llama Guard judged the question: it was never sent, and the answer ends
    `safety_unchecked`, so the next question (alone screened) does not take it upstream."""
    session = user_screening_questions(server_env(server_database.url, sim), "screened")
    first = launch("first", **REAPER)
    client = await ChatClient(first, session).connect()
    created = await client.send_message("[sim:guard_delay=60] The question nobody screened")
    message_id, conversation_id = created["id"], created["conversation_id"]
    await await_for(lambda: len(sim.moderations) == 1, "the question's check")
    first.kill()
    await client.close()

    second = launch("second", **REAPER)
    watcher = await ChatClient(second, session).connect()
    await watcher.send({"type": "chat.subscribe", "conversation_id": conversation_id})
    state = (await watcher.until_type("conversation.state"))[-1]
    if next(m for m in state["messages"] if m["id"] == message_id)["status"] == "streaming":
        frames = await watcher.until_type("message.done", message_id)
        error = next(f for f in frames if f["type"] == "message.error")["error"]
        assert (error["code"], error["retryable"]) == ("safety_unchecked", True)
        assert frames[-1]["status"] == "interrupted"
    data = await asyncio.to_thread(
        second.get_json, f"/api/conversations/{conversation_id}/", session
    )
    answer = next(m for m in data["messages"] if m["id"] == message_id)
    assert (answer["status"], answer["error"]["code"]) == ("interrupted", "safety_unchecked")
    assert sim.requests == []

    await watcher.send_message("Something else", conversation_id)
    await watcher.until(lambda f: f["type"] == "message.done")
    assert [m["content"] for m in sim.requests[-1]["messages"]] == ["Something else"]
    await watcher.close()
