"""A whole chat over the websocket, as operators see it: logged with the connection's request
id, counted in /metrics, and at INFO the logs never hold what was asked or answered, nor the key.
"""

import io
import json
import logging

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families
from pythonjsonlogger.json import JsonFormatter

from chatapp.asgi import application
from chatapp.core.logs import RequestIdFilter, logging_config
from tests.support.simulator import SimulatorOptions

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sim-hygiene-key-24680"
SECRET_QUESTION = "What is the launch code zebra-4471-quartz?"
TIMEOUT = 10


@pytest.fixture(scope="module")
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(api_key=KEY, site_provider=True)


@pytest.fixture
def upstream(sim, settings):
    settings.CHAT_REAPER_INTERVAL_SECONDS = 0
    return sim


@pytest.fixture(autouse=True)
async def close_orm_thread_connections():
    yield
    # The ORM thread keeps its connection (CONN_MAX_AGE); close it so the test database can go.
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def raw_lines():
    """Everything logged at INFO and above, as JSON, with no redaction to hide mistakes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    options = logging_config("INFO", "json")["formatters"]["json"]
    handler.setFormatter(JsonFormatter(options["fmt"], rename_fields=options["rename_fields"]))
    handler.addFilter(RequestIdFilter())
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


async def open_socket(user, request_id: str) -> WebsocketCommunicator:
    cookie = await database_sync_to_async(session_cookie)(user)
    headers = [
        (b"origin", b"http://127.0.0.1"),
        (b"host", b"127.0.0.1"),
        (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()),
        (b"x-request-id", request_id.encode()),
    ]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


async def ask(communicator, content: str) -> dict:
    frame = {"type": "chat.send", "request_id": "r1", "conversation_id": None, "content": content}
    await communicator.send_json_to(frame)
    while True:
        reply = await communicator.receive_json_from(TIMEOUT)
        if reply["type"] in ("message.done", "message.error", "error"):
            return reply


async def test_a_chat_logs_its_request_id_but_no_content_or_key(upstream, member, raw_lines):
    communicator = await open_socket(member, "ws-trace-1")
    done = await ask(communicator, SECRET_QUESTION)
    await communicator.disconnect()

    assert done["type"] == "message.done" and done["status"] == "complete"
    lines = raw_lines()
    text = json.dumps(lines)
    assert "zebra-4471-quartz" not in text
    assert KEY not in text
    access = [line for line in lines if line["logger"] == "chatapp.access"]
    assert [line["message"] for line in access] == ["WS /ws/chat/ open", "WS /ws/chat/ closed 1000"]
    assert {line["request_id"] for line in access} == {"ws-trace-1"}


async def test_a_rejected_key_is_not_logged_either(upstream, member, raw_lines, settings):
    settings.LLAMA_API_KEY = "wrong-key-13579-abcdef"
    communicator = await open_socket(member, "ws-trace-2")
    failed = await ask(communicator, SECRET_QUESTION)
    await communicator.disconnect()

    assert failed["type"] in ("message.error", "message.done")
    text = json.dumps(raw_lines())
    assert "wrong-key-13579-abcdef" not in text
    assert "zebra-4471-quartz" not in text


async def test_an_anonymous_socket_is_logged_with_its_close_code(db, raw_lines):
    communicator = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
    )
    await communicator.connect(timeout=TIMEOUT)
    assert await communicator.receive_output(TIMEOUT) == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()
    opened, closed = [line for line in raw_lines() if line["logger"] == "chatapp.access"]
    assert closed["message"] == "WS /ws/chat/ closed 4401"
    assert closed["status"] == 4401
    assert opened["request_id"] == closed["request_id"]
    assert len(closed["request_id"]) == 32


def scrape() -> dict[tuple[str, tuple], float]:
    """Every sample /metrics serves, keyed by name and labels."""
    with override_settings(METRICS_TOKEN="observability-token", METRICS_ALLOWED_NETWORKS=[]):
        response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer observability-token")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def change(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_a_chat_is_counted_in_metrics(upstream, member, settings):
    before = await sync_to_async(scrape)()
    communicator = await open_socket(member, "ws-metrics-1")
    opened = await sync_to_async(scrape)()
    done = await ask(communicator, "Count this one")
    await communicator.disconnect()
    settings.LLAMA_API_KEY = "wrong-key-for-the-error-count"
    communicator = await open_socket(member, "ws-metrics-2")
    await ask(communicator, "And fail this one")
    await communicator.disconnect()
    after = await sync_to_async(scrape)()

    assert change(before, opened, "chat_websocket_connections") == 1
    assert change(before, after, "chat_websocket_connections") == 0
    assert change(before, after, "chat_active_streams") == 0
    ttft = "chat_time_to_first_token_seconds_count"
    assert change(before, after, ttft) == 1
    assert change(before, after, "chat_stream_duration_seconds_count") >= 1
    tokens = done["usage"]["completion_tokens"]
    assert change(before, after, "chat_tokens_relayed_total") == tokens > 0
    assert change(before, after, "chat_upstream_errors_total", code="auth_failed") == 1
