"""What the owner of a failed answer is told: a refused key in members' and admins' terms."""

import httpx
import pytest
from django.urls import reverse

from chatapp.chat.actions.replies import KEY_REFUSED_FOR_MEMBERS
from chatapp.chat.lookups import FINAL_ERRORS
from chatapp.chat.models import Message
from chatapp.llm import ProviderConfig, count_tokens_estimate
from chatapp.llm.errors import error_from_response
from chatapp.teams.models import TeamUsage
from llama_simulator.models import count_prompt_tokens

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_refused_key_tells_a_member_the_admins_were_told_and_offers_no_retry(
    connect, member, sim
):
    socket = await connect(member)
    ids = await socket.send_message("Hello [sim:fault=401]")
    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    told = KEY_REFUSED_FOR_MEMBERS.format(server="The Llama API")
    assert error == {"code": "auth_failed", "message": told, "retryable": False}
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert answer.error_message == told  # what a reload shows too
    await socket.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = (await socket.until_type("conversation.state"))[-1]["messages"]
    assert state[-1]["status"] == "error"
    assert state[-1]["error"] == error  # a reload offers no Retry either


async def test_a_member_of_a_site_on_its_own_model_server_is_told_that_server_refused_the_key(
    connect, member, sim, settings
):
    settings.LLAMA_API_PROTOCOL = "openai"
    settings.LLAMA_API_BASE_URL = sim.openai_url
    socket = await connect(member)
    ids = await socket.send_message("Hello [sim:fault=401]")
    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    assert error["message"] == (
        "The model server at 127.0.0.1 refused the team's key; your team admins have been told."
    )


async def test_a_refused_key_gives_an_admin_the_reason_and_the_provider_page(
    connect, owner, team, sim
):
    socket = await connect(owner)
    ids = await socket.send_message("Hello [sim:fault=401]")
    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    assert error["code"] == "auth_failed"
    assert "LLAMA_API_KEY" in error["message"]
    assert error["retryable"] is False
    assert error["help_url"] == reverse("teams:provider", args=[team.pk])
    await socket.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = (await socket.until_type("conversation.state"))[-1]["messages"]
    assert state[-1]["error"] == error  # after a reload: the same words, link and no Retry


async def test_a_refused_key_gives_a_team_admin_the_reason_without_the_owners_page(
    connect, admin_member, sim
):
    """The provider page is the owners' (403 for an admin): an admin is told the reason and
    that an owner changes the key, with no link to a page they cannot open."""
    socket = await connect(admin_member)
    ids = await socket.send_message("Hello [sim:fault=401]")
    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    assert error["code"] == "auth_failed" and "LLAMA_API_KEY" in error["message"]
    assert "help_url" not in error and error["retryable"] is False
    await socket.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = (await socket.until_type("conversation.state"))[-1]["messages"]
    assert state[-1]["error"] == error  # after a reload too


async def test_a_refused_key_ending_the_answer_while_a_page_reloads_keeps_the_provider_page(
    connect, owner, team, sim, toolbox, monkeypatch
):
    """The state takes the answer from its stored row when it ends between the state's read
    and its snapshot: that error too carries the owner's link, as its message.error did."""
    from chatapp.chat import consumers
    from chatapp.chat.actions import replies
    from chatapp.chat.generation import RUNNING

    socket = await connect(owner)
    ids = await socket.send_message("File it [sim:call=create_ticket]")
    message_id = ids["message_id"]
    call = (await socket.until_type("message.tool_call", message_id))[-1]["call"]
    assert call["status"] == "awaiting_approval"

    async def refused_first(message_id, reply_channel):  # the answer ends before it is asked
        sim.app.api_key = "another-key"  # the next turn's request is refused
        await replies.request_tool_decision(message_id, call["id"], True)
        await RUNNING[message_id].wait()

    monkeypatch.setattr(consumers.replies, "request_snapshot", refused_first)
    await socket.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    frames = await socket.until_type("message.done", message_id)
    live = next(f for f in frames if f["type"] == "message.error")["error"]
    assert live["help_url"] == reverse("teams:provider", args=[team.pk])
    answer = next(f for f in frames if f["type"] == "conversation.state")["messages"][-1]
    assert (answer["id"], answer["status"]) == (message_id, "interrupted")
    assert answer["error"] == live


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 503])
@pytest.mark.parametrize(
    "detail", ["", "The model 'x' does not exist", "maximum context length is 8192 tokens"]
)
def test_a_stored_error_offers_retry_as_its_live_error_did(status, detail):
    """A reload reads whether to retry from the stored code alone."""
    body = f'{{"detail": "{detail}"}}'.encode()
    config = ProviderConfig("https://llm.example.com/v1", "key")
    live = error_from_response(httpx.Response(status, content=body), body, config, "x")
    assert (live.code not in FINAL_ERRORS) == live.retryable, live.code


async def test_a_stopped_answer_reports_the_tokens_it_streamed(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message("Count [sim:long tokens=400] [sim:pace tps=40]")
    await socket.until_type("message.delta", ids["message_id"])
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "stopped"
    assert 0 < done["usage"]["completion_tokens"] < 400
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert answer.completion_tokens == done["usage"]["completion_tokens"]


async def test_a_refused_setting_is_not_offered_for_retry(connect, member, sim):
    socket = await connect(member)
    await socket.send(
        {
            "type": "chat.send",
            "request_id": "r1",
            "conversation_id": None,
            "content": "Too hot",
            "settings": {"temperature": 7},
        }
    )
    error = (await socket.until_type("error"))[-1]["error"]
    assert error["field"] == "temperature"
    assert error["message"] == "Temperature must be a number from 0 to 1."
    assert error["retryable"] is False


@pytest.mark.parametrize("fault", ["error_after after=5", "cut after=5"])
async def test_an_answer_cut_by_the_llama_api_counts_the_tokens_it_streamed(
    connect, member, team, sim, fault
):
    socket = await connect(member)
    ids = await socket.send_message(f"Count [sim:fault={fault}]")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "interrupted"
    # One a delta read (a busy process reads several tokens at once): never none.
    assert done["usage"]["completion_tokens"] > 0
    # The provider bills the prompt of a cut stream too: counted by the history's estimate.
    assert done["usage"]["prompt_tokens"] == count_prompt_tokens(sim.requests[-1]["messages"])
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert answer.completion_tokens == done["usage"]["completion_tokens"]
    assert answer.prompt_tokens == done["usage"]["prompt_tokens"]
    row = await TeamUsage.objects.aget(team=team, user=member)
    assert (row.prompt_tokens, row.completion_tokens, row.requests) == (
        answer.prompt_tokens,
        answer.completion_tokens,
        1,
    )


async def test_a_cut_answer_read_in_chunks_of_many_tokens_counts_its_text_not_its_chunks(
    connect, member, team, sim
):
    """A provider (or a busy simulator) may put many tokens in one chunk: 60 tokens of text
    count as the history's estimate of that text, not as the handful of chunks they came in."""
    socket = await connect(member)
    ids = await socket.send_message("Count [sim:fault=cut after=60] [sim:pace tps=1000000]")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "interrupted"
    answer = await Message.objects.aget(pk=ids["message_id"])
    shown = count_tokens_estimate(answer.content)
    assert shown >= 60
    assert done["usage"]["completion_tokens"] >= shown
    row = await TeamUsage.objects.aget(team=team, user=member)
    assert row.completion_tokens == done["usage"]["completion_tokens"]
