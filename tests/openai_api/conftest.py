"""The OpenAI-compatible API: keys made the way the settings page makes them, and the
official openai SDK talking to the app (in-process over ASGI here; over a live daphne in
test_sdk_live.py), with the Llama API simulator as the site's upstream."""

import json

import httpx
import openai
import pytest
from channels.db import database_sync_to_async
from django.db import connections

from chatapp.asgi import application
from chatapp.teams import actions as team_actions
from tests.chat.conftest import (
    SIMULATOR,
    connect,  # noqa: F401  (the chat page's sockets, as a fixture)
)

MODEL = "Llama-3.3-70B-Instruct"


@pytest.fixture(scope="session")
def simulator_options():
    return SIMULATOR


@pytest.fixture(autouse=True)
async def close_connections(request):
    yield
    if request.node.get_closest_marker("django_db") is None:
        return
    # The ORM thread keeps its connection (CONN_MAX_AGE); close it so the test database can go.
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def make_key(db):
    def make(user, team=None, name="script", expires_at=None) -> str:
        _, secret = team_actions.create_api_key(user, team, name, expires_at)
        return secret

    return make


def sdk(key: str, **headers: str) -> openai.AsyncOpenAI:
    """The official SDK, sending its requests to the app in this process."""
    transport = httpx.ASGITransport(app=application)
    return openai.AsyncOpenAI(
        api_key=key,
        base_url="http://testserver/v1",
        http_client=httpx.AsyncClient(transport=transport),
        max_retries=0,
        default_headers=headers or None,
    )


async def refused_field(key: str, body: dict, field: str, value: str) -> dict:
    """The error of a request whose `field` is `value` written as raw JSON (escapes JSON can
    carry and UTF-8 cannot), after checking it is a 400 invalid_request naming that field."""
    text = json.dumps(body)[:-1] + f', "{field}": {value}}}'
    async with raw(key) as http:
        response = await http.post(
            "/v1/chat/completions", content=text, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_request",
        field,
    )
    return error


def raw(key: str | None = None) -> httpx.AsyncClient:
    """Plain HTTP to the app, for what the SDK hides (headers, exact bodies)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application),
        base_url="http://testserver",
        headers=headers,
    )
