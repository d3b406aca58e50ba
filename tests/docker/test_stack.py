"""docker-compose.yml run for real: nginx, two app replicas, PostgreSQL, Redis and the Llama API
simulator in its own container. Everything a user does goes through nginx.

The tests share one stack and run in file order: the Redis restart and the killed replica
come last because they change it, and the last test takes it down.
"""

import socket
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.docker.stack import (
    Stack,
    Visitor,
    deltas,
    docker,
    finished,
    read_until,
    send,
    wait_for,
)

pytestmark = pytest.mark.docker

PASSWORD = "a-long-password-for-the-stack"
# The simulator's pacing directives: a short answer, and one long enough to kill mid-way.
QUICK = "[sim:pace tps=60 ttft=0.05]"
LONG = "[sim:long tokens=300 pace tps=20 ttft=0.05]"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stack():
    stack = Stack(http_port=unused_port())
    try:
        stack.up()
        wait_for(
            lambda: _ok(f"{stack.base}/healthz") and len(stack.containers("app")) == 2,
            180,
            "nginx to reach a healthy replica",
        )
        yield stack
    finally:
        # Shown by pytest only when something failed.
        for service in ("app", "proxy", "simulator"):
            for container in stack.containers(service):
                print(f"--- {service} {container}\n{stack.logs(container)[-3000:]}")
        stack.down()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def replicas(stack) -> list[str]:
    """The replicas' container ids."""
    return stack.containers("app")


@pytest.fixture(scope="module")
def member(stack) -> Visitor:
    visitor = Visitor(stack)
    visitor.sign_up("stack-owner", PASSWORD)
    return visitor


@pytest.fixture(scope="module")
def team_prompt(member) -> dict:
    created = member.request(
        "POST",
        "/api/system-prompts/",
        json={"name": "Stack voice", "content": "Answer as the stack test.", "is_default": False},
    )
    assert created.status_code == 201, created.text
    return created.json()


def socket_on(stack: Stack, visitor: Visitor, replica: str, replicas: list[str]):
    """A chat socket through nginx that landed on the given replica (nginx takes turns). Each
    replica logs a line for every socket it opens: the new line says where this one went."""
    for _ in range(20):
        before = {container: stack.sockets_opened(container) for container in replicas}
        ws = visitor.socket()

        def landed(before=before):
            grew = [c for c in replicas if stack.sockets_opened(c) > before[c]]
            return grew[0] if len(grew) == 1 else None

        if wait_for(landed, 30, "a replica to log the socket") == replica:
            return ws
        ws.close()
    raise AssertionError(f"nginx never sent a socket to {replica}")


def start_conversation(ws, prompt_id: int | None = None, text: str = "Hello stack") -> dict:
    send(
        ws,
        {
            "type": "chat.send",
            "request_id": "first",
            "conversation_id": None,
            "content": f"{text} {QUICK}",
            "system_prompt_id": prompt_id,
        },
    )
    frames = read_until(ws, lambda f: f["type"] == "message.done")
    assert frames[-1]["status"] == "complete", frames[-1]
    created = [f for f in frames if f["type"] == "message.created"]
    return {
        "conversation_id": created[0]["message"]["conversation_id"],
        "answer_id": created[-1]["message"]["id"],
        "frames": frames,
    }


def subscribe(ws, conversation_id: int) -> dict:
    send(ws, {"type": "chat.subscribe", "conversation_id": conversation_id})
    return read_until(ws, lambda f: f["type"] == "conversation.state")[-1]


def test_migrations_ran_once_under_the_lock_though_both_replicas_started_together(stack):
    logs = [stack.logs(container) for container in stack.containers("app")]
    applied = [log for log in logs if "Applying " in log]
    assert len(applied) == 1, "exactly one replica applied the migrations"
    assert sum("No migrations to apply." in log for log in logs) == 1
    (db,) = stack.containers("db")
    counts = docker(
        "exec",
        db,
        "psql",
        "-U",
        "chat",
        "-d",
        "chat",
        "-Atc",
        "SELECT count(*), count(DISTINCT (app, name)) FROM django_migrations",
    )
    total, distinct = counts.split("|")
    assert int(total) == int(distinct) > 10


def test_health_through_nginx_and_readiness_on_each_replica(stack, replicas):
    health = httpx.get(f"{stack.base}/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    # /readyz asks the Llama API: nginx keeps it from outside, the stack's network reads it.
    assert httpx.get(f"{stack.base}/readyz", timeout=10).status_code == 404
    for address in map(stack.address, replicas):
        ready = httpx.get(f"http://{address}:8000/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["upstream"] == "ok"


def test_metrics_are_only_for_the_stacks_own_network(stack, replicas):
    assert httpx.get(f"{stack.base}/metrics", timeout=10).status_code == 404
    for address in map(stack.address, replicas):
        inside = stack.replica_metrics(address)
        assert inside.status_code == 200
        assert "chat_websocket_connections" in inside.text
        # What nginx would forward for a client outside the network.
        outside = stack.replica_metrics(address, **{"X-Forwarded-For": "198.51.100.7"})
        assert outside.status_code == 403


def test_a_team_chats_through_nginx_and_both_replicas_stream_the_same_answer(
    stack, replicas, member, team_prompt
):
    first, second = replicas
    ws_a = socket_on(stack, member, first, replicas)
    ws_b = socket_on(stack, member, second, replicas)
    with ws_a, ws_b:
        started = start_conversation(ws_a, team_prompt["id"])
        assert deltas(started["frames"], started["answer_id"])
        conversation_id = started["conversation_id"]
        state = subscribe(ws_b, conversation_id)
        assert [m["role"] for m in state["messages"]][-2:] == ["user", "assistant"]

        send(
            ws_a,
            {
                "type": "chat.send",
                "request_id": "second",
                "conversation_id": conversation_id,
                "content": f"And once more {QUICK}",
            },
        )
        on_a = read_until(ws_a, lambda f: f["type"] == "message.done")
        answer_id = on_a[-1]["message_id"]
        on_b = read_until(ws_b, finished(answer_id))
        assert deltas(on_a, answer_id) and deltas(on_b, answer_id) == deltas(on_a, answer_id)
        assert on_b[-1]["status"] == "complete"

    # The team prompt went upstream, to the simulator's own container.
    sent = httpx.get(f"http://{simulator_address(stack)}:8100/_sim/requests", timeout=10).json()
    systems = [m["content"] for r in sent for m in r["messages"] if m["role"] == "system"]
    assert any("Answer as the stack test." in str(content) for content in systems)


def simulator_address(stack: Stack) -> str:
    (container,) = stack.containers("simulator")
    return stack.address(container)


def test_sockets_resubscribe_after_redis_restarts(stack, replicas, member):
    first, second = replicas
    ws_a = socket_on(stack, member, first, replicas)
    ws_b = socket_on(stack, member, second, replicas)
    conversation_id = start_conversation(ws_a)["conversation_id"]
    subscribe(ws_b, conversation_id)

    recovered = {container: stack.layer_recoveries(container) for container in replicas}
    (redis,) = stack.containers("redis")
    docker("restart", redis)
    # Redis forgot every group, so no socket may stay open and deaf: each is closed with 4012
    # ("service restart", docs/protocol.md), by the replica's layer watch or by the socket's
    # own failed read of the layer, and the page reconnects.
    for ws in (ws_a, ws_b):
        with pytest.raises(ConnectionClosed) as closed:
            read_until(ws, lambda f: False, timeout=30)
        assert closed.value.rcvd.code == 4012

    # Like the page: once each replica's layer answers again, reconnect and resubscribe,
    # again after any socket that closes on the way. A socket may be closed first by its own
    # failed read; each replica's watch then still closes whatever is open when it notices the
    # restart, so wait for both watches before the sockets that later tests rely on.
    for container in replicas:
        address = stack.address(container)
        wait_for(lambda a=address: _ok(f"http://{a}:8000/healthz"), 60, "the layer to answer")
        wait_for(
            lambda c=container: stack.layer_recoveries(c) > recovered[c],
            60,
            "the replica's layer watch to notice the restart",
        )
        # Each of the replica's processes (one per core) has its own watch, and one may notice
        # a moment after another: a socket opened in between would be closed by the late one.
        wait_for(
            lambda c=container: unchanged_for(lambda: stack.layer_recoveries(c), 4),
            60,
            "every process of the replica to notice the restart",
        )
    ws_a = rejoin(stack, member, first, replicas, conversation_id)
    ws_b = rejoin(stack, member, second, replicas, conversation_id)
    with ws_a, ws_b:
        send(
            ws_a,
            {
                "type": "chat.send",
                "request_id": "after-restart",
                "conversation_id": conversation_id,
                "content": f"Still there? {QUICK}",
            },
        )
        on_a = read_until(ws_a, lambda f: f["type"] == "message.done")
        answer_id = on_a[-1]["message_id"]
        on_b = read_until(ws_b, finished(answer_id))
        sent, heard = deltas(on_a, answer_id), deltas(on_b, answer_id)
        every_seq = list(range(1, len(sent) + 1))
        assert [seq for seq, _ in sent] == every_seq != []
        # Redis was just restarted, and the protocol allows the other replica's socket to miss
        # a frame then: in order and without duplicates still, and a client that sees a seq
        # skipped subscribes again and takes the text from the state, as the page does.
        seqs = [seq for seq, _ in heard]
        assert seqs == sorted(set(seqs)) and set(seqs) <= set(every_seq)
        shown = "".join(text for _, text in heard)
        if seqs != every_seq:
            shown = message_text(subscribe(ws_b, conversation_id), answer_id)
        assert shown == "".join(text for _, text in sent)


def message_text(state: dict, message_id: int) -> str:
    (message,) = [m for m in state["messages"] if m["id"] == message_id]
    return message["content"]


def unchanged_for(count, seconds: float) -> bool:
    """Whether count() gives the same number at the start and the end of `seconds`."""
    before = count()
    time.sleep(seconds)
    return count() == before


def rejoin(stack, member, replica, replicas, conversation_id):
    for _ in range(10):
        ws = socket_on(stack, member, replica, replicas)
        try:
            subscribe(ws, conversation_id)
            return ws
        except ConnectionClosed:
            time.sleep(1)
    raise AssertionError(f"no socket on {replica} stayed open after the Redis restart")


def test_a_replica_killed_mid_answer_is_reaped_by_the_other_which_answers_anew(
    stack, replicas, member
):
    doomed, survivor = replicas
    # Soon after the Redis restart above, a new socket may still be closed with 4012 once;
    # like the page, open the sockets again then.
    for _ in range(5):
        ws_a = socket_on(stack, member, doomed, replicas)
        ws_b = socket_on(stack, member, survivor, replicas)
        try:
            conversation_id = start_conversation(ws_a)["conversation_id"]
            subscribe(ws_b, conversation_id)
            break
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4012, closed
            ws_a.close()
            ws_b.close()
            time.sleep(1)
    else:
        raise AssertionError("no pair of sockets stayed open after the Redis restart")
    send(
        ws_a,
        {
            "type": "chat.send",
            "request_id": "long",
            "conversation_id": conversation_id,
            "content": f"Tell me everything {LONG}",
        },
    )
    created = read_until(
        ws_a,
        lambda f: f["type"] == "message.created" and f["message"]["role"] == "assistant",
    )
    answer_id = created[-1]["message"]["id"]
    streamed = read_until(
        ws_b, lambda f: len(deltas([f], answer_id)) == 1 and f["seq"] >= 20, timeout=60
    )
    assert stack.gauge(stack.address(doomed), "chat_active_streams") == 1
    assert stack.gauge(stack.address(survivor), "chat_active_streams") == 0

    def stored_answer() -> dict:
        stored = member.request("GET", f"/api/conversations/{conversation_id}/").json()
        return next(m for m in stored["messages"] if m["id"] == answer_id)

    # What the reaper keeps is the last checkpoint (about once a second): let one be written
    # with the question restated (an early one may hold only its first words).
    wait_for(
        lambda: stored_answer()["content"].startswith("You asked: *Tell me everything*"),
        30,
        "a checkpoint of the answer's opening",
    )
    docker("kill", doomed)
    ws_a.close()
    after = read_until(ws_b, finished(answer_id), timeout=90)
    assert after[-1]["status"] == "interrupted"
    errors = [f for f in after if f["type"] == "message.error"]
    assert errors and errors[0]["error"]["code"] == "interrupted"

    seqs = [seq for seq, _ in deltas(streamed + after, answer_id)]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1
    kept = stored_answer()
    assert kept["status"] == "interrupted"
    # The simulator's answer opens by restating the question: the streamed text was kept.
    assert kept["content"].startswith("You asked: *Tell me everything*")

    with ws_b:
        send(ws_b, {"type": "chat.regenerate", "message_id": answer_id})
        # The new answer's end: a late frame about the reaped answer may come first.
        again = read_until(
            ws_b,
            lambda f: f["type"] == "message.done" and f["message_id"] != answer_id,
            timeout=120,
        )
        new_id = again[-1]["message_id"]
        assert again[-1]["status"] == "complete"
        assert deltas(again, new_id)


def test_down_with_volumes_leaves_nothing_behind(stack):
    assert stack.leftovers()["volumes"], "the database had its volume"
    stack.down()
    assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
