"""The process running an answer is stopped (SIGTERM: a deploy, a restart, `docker stop`).

Before it exits, it ends the answer as interrupted with all of its text saved and says so to
the sockets still open, where a killed process (test_process_killed) leaves the text of its
last checkpoint, up to a second behind, for another process's reaper to find.
"""

import asyncio
import json
import socket
import urllib.error
import urllib.request

import httpx
import psycopg
import pytest
import websockets

from tests.databases import uses_postgres
from tests.resilience.servers import (
    FRAME_SECONDS,
    MODEL,
    ChatClient,
    manage,
    server_env,
    text_of,
)
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


@pytest.mark.skipif(not uses_postgres(), reason="holds a row lock: PostgreSQL only")
async def test_an_answer_still_starting_as_the_server_stops_is_ended_not_left_streaming(
    launch, session_for, server_database, sim
):
    """Its rows are being written when SIGTERM comes (the database is slow: here, a lock on the
    user's row holds start_reply). It ends interrupted, with the text its socket was sent, before
    the process exits, instead of streaming on in the database, holding its conversation ("an
    answer is still streaming here") and one of the user's answers, until a reaper finds it a
    minute or two later."""
    server = launch("stopping")
    session = session_for()
    user_id = (await asyncio.to_thread(server.get_json, "/api/me/", session))["id"]
    client = await ChatClient(server, session).connect()
    with psycopg.connect(server_database.url) as locker:
        locker.execute("SELECT id FROM auth_user WHERE id = %s FOR UPDATE", [user_id])
        send = {"type": "chat.send", "request_id": "r", "conversation_id": None}
        await client.send({**send, "content": "Hello"})
        await await_for(lambda: lock_waiters(locker), "the answer's start to wait on the lock")
        server.process.terminate()
        await await_for(lambda: stop_began(server), "the process to begin its stop")
        locker.rollback()  # the rows are written now, as the process stops
    with pytest.raises(websockets.ConnectionClosed):  # read what it sends until it closes
        while True:
            await client.receive()
    assert await asyncio.to_thread(server.process.wait, 30) == 0

    after = launch("after")
    (listed,) = (await asyncio.to_thread(after.get_json, "/api/conversations/", session))["results"]
    path = f"/api/conversations/{listed['id']}/"
    question, answer = (await asyncio.to_thread(after.get_json, path, session))["messages"]
    assert question["content"] == "Hello"
    assert answer["status"] == "interrupted"
    assert answer["content"] == text_of(client.received, answer["id"])  # what its socket got
    # The conversation takes the next question at once.
    again = await ChatClient(after, session).connect()
    created = await again.send_message("Again", listed["id"])
    done = await again.until_type("message.done", created["id"])
    assert done[-1]["status"] == "complete"


@pytest.mark.skipif(not uses_postgres(), reason="holds a row lock: PostgreSQL only")
async def test_health_checks_say_stopping_while_the_process_ends_its_answers(
    launch, session_for, server_database
):
    """While it waits for its answers to end it still accepts connections: /healthz and /readyz
    answer 503 "stopping", so a load balancer or an orchestrator sends nobody new there."""
    server = launch("stopping")
    session = session_for()
    user_id = (await asyncio.to_thread(server.get_json, "/api/me/", session))["id"]
    client = await ChatClient(server, session).connect()
    with psycopg.connect(server_database.url) as locker:  # the answer's start waits on it
        locker.execute("SELECT id FROM auth_user WHERE id = %s FOR UPDATE", [user_id])
        send = {"type": "chat.send", "request_id": "r", "conversation_id": None}
        await client.send({**send, "content": "Hello"})
        await await_for(lambda: lock_waiters(locker), "the answer's start to wait on the lock")
        server.process.terminate()
        await await_for(lambda: "Stopping:" in server.log_tail(), "the process to begin its stop")
        for path in ("/healthz", "/readyz"):
            status, body = await asyncio.to_thread(health, server.url + path)
            assert (status, body) == (503, {"status": "stopping"})
        locker.rollback()
    assert await asyncio.to_thread(server.process.wait, 30) == 0


def health(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=FRAME_SECONDS) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def stop_began(server) -> bool:
    """The process says it stops, or has stopped listening already."""
    if "Stopping:" in server.log_tail():
        return True
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", server.port)) != 0


def lock_waiters(locker: psycopg.Connection) -> bool:
    """Whether another session of the servers' database waits on a lock."""
    with psycopg.connect(locker.info.dsn, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return row[0] > 0


async def test_an_api_answer_streaming_as_the_server_stops_counts_what_its_client_read(
    launch, server_database, sim
):
    """daphne cancels the request as it stops, but not the task streaming the response (Django
    leaves that to the request's end), so the stream's own ending never ran: the tokens the
    client had read were never counted against the team's budgets."""
    server = launch("api")
    env = server_env(server_database.url, sim)
    key = manage(env, "shell", "-v", "0", "-c", NEW_KEY).strip().splitlines()[-1]
    body = {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": "[sim:pace tps=40] [sim:long tokens=4000] Go"}],
    }
    read = ""
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=FRAME_SECONDS) as client,
        client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response,
    ):
        with pytest.raises(httpx.RemoteProtocolError):  # read until the server closes
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    read += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                if len(read) >= 60 and server.process.returncode is None:
                    server.process.terminate()
    assert await asyncio.to_thread(server.process.wait, 30) == 0
    # The stop is a quiet one: the request daphne cancelled is no error of the app's.
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "never retrieved" not in log, log[-3000:]

    counted = json.loads(manage(env, "shell", "-v", "0", "-c", USAGE).strip().splitlines()[-1])
    assert counted["requests"] == 1
    assert counted["completion_tokens"] >= len(read) // 4  # the history's estimate of it


NEW_KEY = """
from django.contrib.auth import get_user_model
from chatapp.teams.actions import create_api_key
user = get_user_model().objects.create_user("scripted", password="pw-scripted")
print(create_api_key(user, None, "script")[1])
"""
USAGE = """
import json
from django.db.models import Sum
from chatapp.teams.models import TeamUsage
rows = TeamUsage.objects.filter(user__username="scripted")
totals = rows.aggregate(requests=Sum("requests"), completion_tokens=Sum("completion_tokens"))
print(json.dumps(totals))
"""
