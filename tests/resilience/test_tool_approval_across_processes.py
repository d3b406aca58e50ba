"""A tool call waiting for approval in one process is approved from a socket on another.

Two daphne processes share PostgreSQL and the channels-redis layer; the team's tool server is
a real MCP server on loopback (tests/support/mcp_server.py).
"""

import os

import pytest

from tests.databases import uses_postgres
from tests.resilience.servers import ChatClient, manage, server_env
from tests.support.mcp_server import run_tool_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (uses_postgres() and os.environ.get("REDIS_URL")),
        reason="runs on PostgreSQL and Redis: set DATABASE_URL=postgres://... and REDIS_URL",
    ),
]


def user_with_tool_server(env: dict[str, str], username: str, url: str) -> str:
    """A user whose personal team has the MCP server at `url`; returns their session cookie."""
    code = (
        "from asgiref.sync import async_to_sync\n"
        "from django.conf import settings\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.test import Client\n"
        "from chatapp.teams.actions import ensure_personal_team\n"
        "from chatapp.tools.actions import fetch_listing, store_listing\n"
        "from chatapp.tools.models import ToolServer\n"
        f"user = get_user_model().objects.create_user({username!r}, password='pw')\n"
        "team = ensure_personal_team(user)\n"
        "server = ToolServer.objects.create(\n"
        f"    team=team, name='desk', url={url!r}, created_by=user\n"
        ")\n"
        "store_listing(server, async_to_sync(fetch_listing)(server.url, '', server.timeout))\n"
        "assert server.is_up, server.last_error\n"
        "client = Client()\n"
        "client.force_login(user)\n"
        "print(client.cookies[settings.SESSION_COOKIE_NAME].value)\n"
    )
    return manage(env, "shell", "-v", "0", "-c", code).strip().splitlines()[-1]


async def test_an_approval_from_another_process_runs_the_call(launch, server_database, sim):
    private = {"REDIS_URL": os.environ["REDIS_URL"], "LLAMA_ALLOW_PRIVATE_PROVIDER_URLS": "1"}
    with run_tool_server() as tools:
        env = server_env(server_database.url, sim, **private)
        session = user_with_tool_server(env, "approver", tools.url)
        first, second = launch("first", **private), launch("second", **private)
        on_first = await ChatClient(first, session).connect()
        on_second = await ChatClient(second, session).connect()

        created = await on_first.send_message("File it [sim:call=create_ticket args=title:Desk]")
        message_id, conversation_id = created["id"], created["conversation_id"]
        call = (await on_first.until_type("message.tool_call", message_id))[-1]["call"]
        assert call["status"] == "awaiting_approval" and tools.calls == []

        # The second process's socket sees the waiting call after a reload, and approves it.
        await on_second.send({"type": "chat.subscribe", "conversation_id": conversation_id})
        state = (await on_second.until_type("conversation.state"))[-1]
        answer = next(m for m in state["messages"] if m["id"] == message_id)
        assert answer["tool_calls"][0]["status"] == "awaiting_approval"
        await on_second.send(
            {
                "type": "chat.tool_decision",
                "conversation_id": conversation_id,
                "message_id": message_id,
                "call_id": call["id"],
                "approve": True,
            }
        )
        done = await on_second.until_type("message.done", message_id)
        result = next(f for f in done if f["type"] == "message.tool_result")
        assert result["content"] == "Created ticket #1: Desk"
        assert tools.record.tickets == ["Desk"]
        assert done[-1]["status"] == "complete"
        await on_first.until_type("message.done", message_id)
        await on_first.close()
        await on_second.close()
