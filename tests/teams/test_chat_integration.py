"""Team rules seen through the real chat websocket and the simulator on loopback."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client

from chatapp.asgi import application
from chatapp.chat.generation import RUNNING
from chatapp.chat.models import Conversation, Message
from chatapp.teams import actions as team_actions
from chatapp.teams import crypto
from chatapp.teams.models import (
    AuditAction,
    AuditEvent,
    BudgetNotice,
    TeamPolicy,
    TeamProvider,
    TeamUsage,
)

from .conftest import TEAM_KEY

pytestmark = pytest.mark.django_db(transaction=True)
MODEL = "Llama-3.3-8B-Instruct"
TIMEOUT = 10


class Socket:
    def __init__(self, communicator: WebsocketCommunicator):
        self.communicator = communicator
        self.raw: list[str] = []

    async def send(self, content: str) -> None:
        frame = {
            "type": "chat.send",
            "request_id": "r",
            "conversation_id": None,
            "content": content,
        }
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def until(self, *types: str) -> dict:
        while True:
            text = await self.communicator.receive_from(TIMEOUT)
            self.raw.append(text)
            frame = json.loads(text)
            if frame["type"] in types:
                return frame


@pytest.fixture(autouse=True)
async def settle():
    """Answers a test started have finished, and the ORM thread's connection is closed."""
    yield
    for generation in list(RUNNING.values()):
        generation.stop()
        await asyncio.wait_for(generation.wait(), TIMEOUT)
    await get_channel_layer().flush()
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
async def connect():
    opened = []

    async def open_for(user) -> Socket:
        client = Client()
        await database_sync_to_async(client.force_login)(user)
        cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
        headers = [
            (b"origin", b"http://127.0.0.1"),
            (b"host", b"127.0.0.1"),
            (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()),
        ]
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        opened.append(communicator)
        return Socket(communicator)

    yield open_for
    for communicator in opened:
        await communicator.disconnect()


@pytest.fixture
def site_is_sim(sim, settings):
    settings.LLAMA_API_BASE_URL = sim.native_url
    settings.LLAMA_API_KEY = TEAM_KEY  # the only key this simulator accepts
    settings.LLAMA_API_PROTOCOL = "llama"
    settings.LLAMA_DEFAULT_MODEL = MODEL
    settings.CHAT_REAPER_INTERVAL_SECONDS = 0
    return sim


@pytest.fixture
def team_server_is_sim(sim, settings, team):
    """The site's server is unreachable; the team's own server is the simulator."""
    settings.LLAMA_API_BASE_URL = "http://127.0.0.1:9/v1"
    settings.LLAMA_API_KEY = "site-key-never-used"
    settings.LLAMA_DEFAULT_MODEL = MODEL
    settings.CHAT_REAPER_INTERVAL_SECONDS = 0
    TeamProvider.objects.create(
        team=team, base_url=sim.native_url, api_key_encrypted=crypto.encrypt(TEAM_KEY)
    )
    return sim


async def test_rate_limited_before_anything_goes_upstream(connect, member, team, site_is_sim):
    await TeamPolicy.objects.acreate(team=team, rate_limit_per_minute=1)
    socket = await connect(member)
    await socket.send("First")
    assert (await socket.until("message.done"))["status"] == "complete"
    await socket.send("Second")
    error = await socket.until("error", "message.error")
    assert error["error"]["code"] == "rate_limited"
    assert "1 message a minute" in error["error"]["message"]
    assert len(site_is_sim.requests) == 1
    assert await Message.objects.acount() == 2


async def test_a_chat_started_before_the_policy_tightened_goes_on_under_the_new_one(
    connect, member, team, site_is_sim
):
    """Its stored model and max tokens were the defaults of the time, not the member's
    request: the team no longer allowing them, they give way to what it allows now (as a
    saved default would) instead of refusing every message of every older chat."""
    socket = await connect(member)
    await socket.send("First")
    assert (await socket.until("message.done"))["status"] == "complete"
    conversation = await Conversation.objects.aget()
    assert (conversation.model, conversation.max_tokens) == (MODEL, 2048)
    await TeamPolicy.objects.acreate(
        team=team, allowed_models=["Llama-3.3-70B-Instruct"], max_tokens_limit=100
    )
    client = Client()
    await database_sync_to_async(client.force_login)(member)
    url = f"/api/conversations/{conversation.pk}/"
    shown = (await database_sync_to_async(client.get)(url)).json()["settings"]
    # The page's settings panel shows (and checks) what the next message will use.
    assert (shown["model"], shown["max_tokens"]) == ("Llama-3.3-70B-Instruct", 100)
    frame = {"type": "chat.send", "request_id": "r2", "conversation_id": conversation.pk}
    await socket.communicator.send_to(text_data=json.dumps({**frame, "content": "Again"}))
    done = await socket.until("message.done", "message.error", "error")
    assert done["type"] == "message.done" and done["status"] == "complete", done
    sent = site_is_sim.requests[-1]
    assert (sent["model"], sent["max_completion_tokens"]) == ("Llama-3.3-70B-Instruct", 100)
    await conversation.arefresh_from_db()
    assert (conversation.model, conversation.max_tokens) == ("Llama-3.3-70B-Instruct", 100)


async def test_a_setting_asked_for_outside_the_policy_is_still_refused(
    connect, member, team, site_is_sim
):
    await TeamPolicy.objects.acreate(team=team, max_tokens_limit=100)
    socket = await connect(member)
    frame = {"type": "chat.send", "request_id": "r", "conversation_id": None, "content": "Hi"}
    await socket.communicator.send_to(
        text_data=json.dumps({**frame, "settings": {"max_tokens": 101}})
    )
    error = await socket.until("error", "message.error", "message.done")
    assert error["error"]["code"] == "invalid_setting" and error["error"]["field"] == "max_tokens"
    assert site_is_sim.requests == []


async def test_over_budget_nothing_goes_upstream(connect, member, team, site_is_sim):
    await TeamPolicy.objects.acreate(team=team, monthly_token_budget=1)
    socket = await connect(member)
    await socket.send("First")
    await socket.until("message.done")  # the budget is not used up yet: 0 < 1
    await socket.send("Second")
    error = await socket.until("error", "message.error")
    assert error["error"]["code"] == "quota_exceeded"
    assert len(site_is_sim.requests) == 1


async def test_a_team_server_answers_and_its_key_never_reaches_the_browser(
    connect, member, team, team_server_is_sim, settings
):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    socket = await connect(member)
    await socket.send("Hello team server")
    done = await socket.until("message.done")
    assert done["status"] == "complete"
    assert len(team_server_is_sim.requests) == 1
    assert TEAM_KEY not in "".join(socket.raw)
    row = await TeamUsage.objects.aget(team=team, user=member)
    assert row.completion_tokens == done["usage"]["completion_tokens"] > 0


async def test_a_team_server_on_a_private_address_is_refused(
    connect, member, team, team_server_is_sim, settings
):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = False
    socket = await connect(member)
    await socket.send("Hello?")
    error = await socket.until("message.error", "error")
    assert error["error"]["code"] == "provider_refused"
    assert "https" in error["error"]["message"]
    assert team_server_is_sim.requests == []
    assert TEAM_KEY not in "".join(socket.raw)


@pytest.mark.parametrize("bad_url", ["{url}\r\nX-Injected: 1", "{url}/\tv1", "{url} /v1"])
async def test_a_stored_provider_url_with_control_characters_is_a_clear_error(
    connect, member, team, site_is_sim, settings, bad_url
):
    """Saved before URLs were checked for them: every chat says what to fix, not internal_error."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    await TeamProvider.objects.acreate(
        team=team,
        base_url=bad_url.format(url=site_is_sim.native_url),
        api_key_encrypted=crypto.encrypt(TEAM_KEY),
    )
    socket = await connect(member)
    await socket.send("Hello")
    error = await socket.until("error", "message.error")
    assert error["error"]["code"] == "provider_invalid"
    assert "Provider page" in error["error"]["message"]
    assert site_is_sim.requests == []
    assert await Message.objects.acount() == 0


async def streaming_answer(socket: Socket, content: str) -> int:
    """Send a question whose answer streams a little, then waits (held open until stopped)."""
    await socket.send(f"[sim:fault=stall_after after=3] {content}")
    delta = await socket.until("message.delta")
    return delta["message_id"]


async def refusal(socket: Socket) -> dict:
    frame = await socket.until("error", "message.error", "message.created")
    assert frame["type"] != "message.created", "admitted"
    return frame


async def stop(socket: Socket, message_id: int) -> dict:
    frame = {"type": "chat.stop", "message_id": message_id}
    await socket.communicator.send_to(text_data=json.dumps(frame))
    return await socket.until("message.done")


async def test_an_answer_streaming_holds_the_team_budget_until_it_ends(
    connect, member, owner, team, site_is_sim
):
    """Answers that start together cannot each pass the same gate: one streaming holds what
    it may spend (its prompt and max tokens), and once it ends only its real usage counts."""
    await TeamPolicy.objects.acreate(team=team, monthly_token_budget=500)
    members_socket, owners_socket = await connect(member), await connect(owner)
    streaming = await streaming_answer(members_socket, "First")
    held = await Message.objects.aget(pk=streaming)
    assert held.reserved_tokens > 2048  # the site's default max tokens, and the question
    await owners_socket.send("Second")
    error = await refusal(owners_socket)
    assert error["error"]["code"] == "quota_exceeded"
    assert "held by answers still streaming" in error["error"]["message"]
    assert len(site_is_sim.requests) == 1
    assert (await stop(members_socket, streaming))["status"] == "stopped"
    used = sum([u.prompt_tokens + u.completion_tokens async for u in TeamUsage.objects.all()])
    assert 0 < used < 500
    await owners_socket.send("Third")
    assert (await owners_socket.until("message.done"))["status"] == "complete"
    assert len(site_is_sim.requests) == 2


async def test_ones_own_answers_streaming_hold_ones_own_limit(
    connect, member, owner, team, site_is_sim
):
    await TeamPolicy.objects.acreate(team=team, member_monthly_token_budget=500)
    members_socket, owners_socket = await connect(member), await connect(owner)
    streaming = await streaming_answer(members_socket, "First")
    await members_socket.send("Second, in another conversation")
    error = await refusal(members_socket)
    assert error["error"]["code"] == "quota_exceeded"
    assert "your monthly limit" in error["error"]["message"]
    await owners_socket.send("The others go on")
    assert (await owners_socket.until("message.done"))["status"] == "complete"
    await stop(members_socket, streaming)
    await members_socket.send("Third")
    assert (await members_socket.until("message.done"))["status"] == "complete"


async def test_the_budget_an_answer_crosses_is_the_one_set_when_it_ends(
    connect, member, owner, team, site_is_sim
):
    """An owner lowers the budget while an answer streams: the answer that passes the new
    budget tells the owners, even though the budget was higher when the answer started (and
    the messages refused next never would)."""
    policy = await TeamPolicy.objects.acreate(team=team, monthly_token_budget=100_000)
    socket = await connect(member)
    streaming = await streaming_answer(socket, "First")
    await database_sync_to_async(team_actions.set_policy)(owner, team, {"monthly_token_budget": 5})
    assert (await stop(socket, streaming))["status"] == "stopped"
    noted = [(n.budget, n.percent) async for n in BudgetNotice.objects.order_by("percent")]
    assert noted == [(5, 80), (5, 100)]
    await policy.arefresh_from_db()
    assert policy.monthly_token_budget == 5


async def test_a_budget_raised_while_an_answer_streams_is_not_told_as_crossed(
    connect, member, owner, team, site_is_sim, settings, mailoutbox
):
    """An owner raises the budget while an answer streams: its end is measured against the
    new budget, not the old one (no notice, no audit event, no e-mail about a budget that is
    no longer the team's)."""
    settings.EMAIL_URL = "locmem://"
    await TeamPolicy.objects.acreate(
        team=team, monthly_token_budget=1000, default_max_tokens=100, max_tokens_limit=100
    )
    await database_sync_to_async(team_actions.record_usage)(team, owner, MODEL, 790, 0)
    socket = await connect(member)
    streaming = await streaming_answer(socket, "First")
    await database_sync_to_async(team_actions.set_policy)(
        owner, team, {"monthly_token_budget": 1_000_000}
    )
    assert (await stop(socket, streaming))["status"] == "stopped"
    used = sum([u.prompt_tokens + u.completion_tokens async for u in TeamUsage.objects.all()])
    assert used >= 800  # past 80% of the budget the answer started under
    assert not await BudgetNotice.objects.aexists()
    assert not await AuditEvent.objects.filter(action=AuditAction.BUDGET_THRESHOLD).aexists()
    assert mailoutbox == []
