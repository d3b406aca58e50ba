import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import connection, connections
from django.test import Client

from chatapp.asgi import application
from chatapp.chat import tooling
from chatapp.chat.generation import RUNNING
from chatapp.chat.ratelimit import frame_limiter, stop_limiter
from chatapp.llm import KNOWN_MODELS
from tests.support.simulator import SimulatorOptions

from .toolbox import Toolbox

SIM_KEY = "sim-chat-key-5678"
MODEL = KNOWN_MODELS[0]
FRAME_TIMEOUT = 30  # a ceiling for a busy machine, never an expectation


# The site's Llama API in these tests (and in tests/resilience, which shares it).
SIMULATOR = SimulatorOptions(tokens_per_second=400, api_key=SIM_KEY, site_provider=True)


@pytest.fixture(scope="session")
def simulator_options() -> SimulatorOptions:
    return SIMULATOR


@pytest.fixture(autouse=True)
def chat_settings(settings):
    settings.CHAT_REAPER_INTERVAL_SECONDS = 0  # the periodic check has tests of its own
    frame_limiter.reset()
    stop_limiter.reset()


@pytest.fixture(autouse=True)
async def clean_layer(request):
    """Every generation a test started has finished, and the layer holds nothing, at the end."""
    yield
    if request.node.get_closest_marker("django_db") is None:
        return
    for generation in list(RUNNING.values()):
        generation.stop()
        await asyncio.wait_for(generation.wait(), FRAME_TIMEOUT)
    await get_channel_layer().flush()
    # The ORM thread keeps its connection (CONN_MAX_AGE); close it so the test database can go.
    await database_sync_to_async(connections.close_all)()


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


class ChatSocket:
    """A websocket client speaking the chat protocol; waits on frames, never on the clock."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.communicator = communicator
        self.received: list[dict] = []

    async def send(self, frame: dict | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float = FRAME_TIMEOUT) -> dict:
        frame = json.loads(await self.communicator.receive_from(timeout))
        self.received.append(frame)
        return frame

    async def receive_until(self, predicate, timeout: float = FRAME_TIMEOUT) -> list[dict]:
        """Frames up to and including the first one matching predicate."""
        frames = []
        while True:
            frame = await self.receive(timeout)
            frames.append(frame)
            if predicate(frame):
                return frames

    async def until_type(self, kind: str, message_id: int | None = None) -> list[dict]:
        def matches(frame):
            return frame["type"] == kind and message_id in (None, frame.get("message_id"))

        return await self.receive_until(matches)

    async def expect_error(self, frame: dict | str) -> dict:
        """Send a frame the server must refuse; answers streaming meanwhile are skipped."""
        await self.send(frame)
        frames = await self.receive_until(lambda f: not f["type"].startswith("message."))
        assert frames[-1]["type"] == "error", frames[-1]
        return frames[-1]

    async def nothing_more(self) -> bool:
        return await self.communicator.receive_nothing(timeout=0.2)

    async def send_message(self, content: str, **fields) -> dict:
        """chat.send and the frames up to the assistant message.created; returns the ids."""
        frame = {"type": "chat.send", "request_id": "r1", "conversation_id": None, **fields}
        await self.send({**frame, "content": content})
        frames = await self.receive_until(
            lambda f: (
                f["type"] == "error"
                or (f["type"] == "message.created" and f["message"]["role"] == "assistant")
            )
        )
        assert frames[-1]["type"] == "message.created", frames
        created = [f for f in frames if f["type"] == "message.created"]
        return {
            "conversation_id": created[-1]["message"]["conversation_id"],
            "user_message_id": created[0]["message"]["id"] if len(created) == 2 else None,
            "message_id": created[-1]["message"]["id"],
            "frames": frames,
        }


@pytest.fixture
async def connect():
    sockets = []

    async def open_socket(user=None, origin: str = "http://127.0.0.1") -> ChatSocket:
        headers = [(b"origin", origin.encode()), (b"host", b"127.0.0.1")]
        if user is not None:
            cookie = await database_sync_to_async(session_cookie)(user)
            name = django_settings.SESSION_COOKIE_NAME
            headers.append((b"cookie", f"{name}={cookie}".encode()))
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        connected, _ = await communicator.connect(timeout=FRAME_TIMEOUT)
        assert connected
        sockets.append(communicator)
        return ChatSocket(communicator)

    yield open_socket
    for communicator in sockets:
        await communicator.disconnect()


def joined_text(frames: list[dict], message_id: int) -> str:
    deltas = [f for f in frames if f["type"] == "message.delta" and f["message_id"] == message_id]
    return "".join(f["text"] for f in deltas)


class QueryLog:
    """SQL run by the ORM thread that database_sync_to_async uses."""

    def __init__(self):
        self.statements: list[str] = []
        self.rows: list[int | None] = []  # an executemany's count of parameter rows

    def __call__(self, execute, sql, params, many, context):
        self.statements.append(sql)
        if many:
            params = list(params)
        self.rows.append(len(params) if many else None)
        return execute(sql, params, many, context)

    def updates_of(self, table: str) -> list[tuple[str, int | None]]:
        """(statement, rows of an executemany or None) of each UPDATE of the table."""
        return [
            (sql, rows)
            for sql, rows in zip(self.statements, self.rows, strict=True)
            if sql.startswith(f'UPDATE "{table}"')
        ]


@pytest.fixture
async def orm_queries():
    log = QueryLog()

    def install():
        connection.execute_wrappers.append(log)

    def uninstall():
        connection.execute_wrappers.remove(log)

    await database_sync_to_async(install)()
    yield log
    await database_sync_to_async(uninstall)()


@pytest.fixture
def toolbox():
    """Fake tools in place of the team's MCP servers."""
    box = Toolbox()
    previous = tooling.use_toolbox(box)
    yield box
    tooling.use_toolbox(previous)
