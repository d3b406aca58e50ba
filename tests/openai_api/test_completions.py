"""POST /v1/chat/completions and GET /v1/models under the chat page's rules, through the
official openai SDK (and plain HTTP where the SDK hides what matters)."""

import asyncio
import contextlib
import gc
import json
from datetime import UTC, timedelta

import openai
import pytest
from channels.db import database_sync_to_async
from django.test import AsyncRequestFactory
from django.utils import timezone

from chatapp.asgi import application
from chatapp.chat import openai_api
from chatapp.chat.generation import LIVE_PER_USER
from chatapp.chat.models import Conversation, Message
from chatapp.chat.openai_api import chat_completions
from chatapp.teams.actions import record_usage
from chatapp.teams.models import (
    ApiKey,
    BudgetHold,
    Membership,
    RecentRequest,
    Role,
    SystemPrompt,
    Team,
    TeamPolicy,
    TeamUsage,
)
from tests.openai_api.conftest import MODEL, raw, refused_field, sdk
from tests.support.polling import await_for

pytestmark = pytest.mark.django_db(transaction=True)
OTHER_MODEL = "Llama-4-Scout-17B-16E-Instruct-FP8"
QUESTION = [{"role": "user", "content": "Say hello"}]


def db(function):
    return database_sync_to_async(function)()


def completion_request(key: str, messages: list[dict] = QUESTION, *, stream: bool = True):
    """A request for the view itself, called in the test: its response is read as the test
    chooses (a stream left unread holds its answer open)."""
    body = {"model": MODEL, "messages": messages, **({"stream": True} if stream else {})}
    return AsyncRequestFactory().post(
        "/v1/chat/completions",
        body,
        content_type="application/json",
        headers={"authorization": f"Bearer {key}"},
    )


async def test_an_answer_in_openais_shape_counted_for_the_key_and_not_stored(
    sim, member, team, make_key
):
    key = await database_sync_to_async(make_key)(member, team)
    client = sdk(key)
    answer = await client.chat.completions.create(model=MODEL, messages=QUESTION)
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    stored = await db(lambda: ApiKey.objects.get())
    usage = await db(lambda: TeamUsage.objects.get())
    assert (usage.team_id, usage.user_id, usage.model) == (team.pk, member.pk, MODEL)
    assert usage.api_key_ref == stored.pk
    assert usage.completion_tokens == answer.usage.completion_tokens
    assert stored.last_used_at is not None
    assert not await db(lambda: Conversation.objects.exists())
    assert sim.requests[-1]["messages"][-1] == {"role": "user", "content": "Say hello"}


async def test_a_stream_ends_with_usage_and_done(sim, member, team, make_key):
    key = await database_sync_to_async(make_key)(member, team)
    stream = await sdk(key).chat.completions.create(
        model=MODEL, messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    async with raw(key) as http:
        body = {"model": MODEL, "messages": QUESTION, "stream": True}
        response = await http.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.rstrip().endswith("data: [DONE]")
    assert '"usage"' not in response.text  # only when stream_options asks
    assert await db(lambda: TeamUsage.objects.get().requests) == 2


async def test_the_save_header_keeps_the_exchange_as_a_conversation(sim, member, team, make_key):
    key = await database_sync_to_async(make_key)(member, team)
    client = sdk(key, **{"X-Save-Conversation": "1"})
    messages = [
        {"role": "user", "content": "First"},
        {"role": "assistant", "content": "One"},
        {"role": "user", "content": [{"type": "text", "text": "Second"}]},
    ]
    answer = await client.chat.completions.create(model=MODEL, messages=messages)
    conversation = await db(lambda: Conversation.objects.get())
    assert conversation.owner_id == member.pk and conversation.team_id == team.pk
    assert answer.model_extra["conversation_id"] == conversation.pk
    rows = await db(lambda: list(Message.objects.order_by("id").values_list("role", "content")))
    assert rows == [
        ("user", "First"),
        ("assistant", "One"),
        ("user", "Second"),
        ("assistant", answer.choices[0].message.content),
    ]


async def test_a_saved_exchange_is_listed_on_the_callers_open_chat_pages(
    sim, member, outsider, team, make_key, connect
):
    """As a conversation started in another tab is: the owner's sockets list it at once."""
    tab = await connect(member)
    stranger = await connect(outsider)
    key = await database_sync_to_async(make_key)(member, team)
    client = sdk(key, **{"X-Save-Conversation": "1"})
    await client.chat.completions.create(model=MODEL, messages=QUESTION)
    conversation = await db(lambda: Conversation.objects.get())
    listed = (await tab.until_type("conversation.created"))[-1]
    assert listed == {
        "type": "conversation.created",
        "request_id": None,
        "conversation": {"id": conversation.pk, "title": "Say hello", "team_id": team.pk},
    }
    await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION)  # not saved
    assert await tab.nothing_more()
    assert await stranger.nothing_more()


@pytest.mark.parametrize("include_usage", [False, True])
async def test_a_saved_streams_last_chunk_names_the_conversation(
    sim, member, team, make_key, include_usage
):
    key = await database_sync_to_async(make_key)(member, team)
    stream = await sdk(key, **{"X-Save-Conversation": "1"}).chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True} if include_usage else None,
    )
    chunks = [chunk async for chunk in stream]
    conversation = await db(lambda: Conversation.objects.get())
    assert chunks[-1].model_extra["conversation_id"] == conversation.pk


@pytest.mark.parametrize("state", ["wrong", "revoked", "expired", "missing", "deactivated"])
async def test_a_bad_key_is_401_in_openais_error_shape(sim, member, team, make_key, state):
    key = await database_sync_to_async(make_key)(member, team)
    if state == "deactivated":
        member.is_active = False
        await member.asave(update_fields=["is_active"])
    changes = {
        "revoked": {"revoked_at": timezone.now()},
        "expired": {"expires_at": timezone.now() - timedelta(seconds=1)},
    }.get(state)
    if changes:
        await db(lambda: ApiKey.objects.update(**changes))
    presented = {"wrong": key[:-3] + "abc", "missing": None}.get(state, key)
    async with raw(presented) as http:
        response = await http.post("/v1/chat/completions", json={"messages": QUESTION})
        models = await http.get("/v1/models")
    assert response.status_code == models.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert error["message"]
    assert key not in response.text
    assert sim.requests == []
    with pytest.raises(openai.AuthenticationError):
        await sdk(presented or "none").models.list()


async def test_models_are_the_teams_allowed_ones(sim, member, team, make_key):
    await db(lambda: TeamPolicy.objects.create(team=team, allowed_models=[OTHER_MODEL]))
    key = await database_sync_to_async(make_key)(member, team)
    listed = await sdk(key).models.list()
    assert [model.id for model in listed.data] == [OTHER_MODEL]
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION)
    assert refused.value.body["code"] == "model_not_allowed"
    assert refused.value.body["param"] == "model"
    assert sim.requests == []


async def test_models_are_the_ones_the_operator_lists(sim, member, team, make_key, settings):
    """A site on its own OpenAI-compatible server offers its models, not the Llama API's."""
    settings.LLAMA_API_PROTOCOL = "openai"
    settings.LLAMA_API_BASE_URL = sim.openai_url
    settings.LLAMA_DEFAULT_MODEL = "qwen2.5:32b"
    settings.LLAMA_MODELS = ["qwen2.5:32b", "llama3.1:8b"]
    client = sdk(await database_sync_to_async(make_key)(member, team))
    listed = await client.models.list()
    assert [model.id for model in listed.data] == ["qwen2.5:32b", "llama3.1:8b"]
    # Offered by this site; who made a model it cannot know, and Qwen is not Llama.
    assert {model.owned_by for model in listed.data} == {"llama-team-chat"}
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve(MODEL)
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model=MODEL, messages=QUESTION)
    assert refused.value.body["code"] == "model_not_allowed"
    assert sim.requests == []


async def test_a_listed_model_its_server_lacks_is_a_502_naming_that_server(
    sim, member, team, make_key, settings
):
    settings.LLAMA_API_PROTOCOL = "openai"
    settings.LLAMA_API_BASE_URL = sim.openai_url
    settings.LLAMA_DEFAULT_MODEL = "qwen2.5:32b"
    settings.LLAMA_MODELS = ["qwen2.5:32b"]
    client = sdk(await database_sync_to_async(make_key)(member, team))
    with pytest.raises(openai.APIStatusError) as failed:
        await client.chat.completions.create(model="qwen2.5:32b", messages=QUESTION)
    assert failed.value.status_code == 502
    assert failed.value.body["code"] == "model_not_found"
    assert failed.value.body["message"].startswith(
        "The model server at 127.0.0.1 does not offer the model 'qwen2.5:32b'"
    )
    assert len(sim.requests) == 1


async def test_a_model_is_retrieved_only_when_the_team_may_use_it(sim, member, team, make_key):
    await db(lambda: TeamPolicy.objects.create(team=team, allowed_models=[OTHER_MODEL]))
    client = sdk(await database_sync_to_async(make_key)(member, team))
    found = await client.models.retrieve(OTHER_MODEL)
    assert (found.id, found.object, found.owned_by) == (OTHER_MODEL, "model", "llama-team-chat")
    for name in (MODEL, "meta-llama/Nowhere-1B"):
        with pytest.raises(openai.NotFoundError) as refused:
            await client.models.retrieve(name)
        assert refused.value.body["code"] == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        await sdk("not-a-key").models.retrieve(OTHER_MODEL)


async def test_the_teams_ceiling_holds(sim, member, team, make_key):
    await db(lambda: TeamPolicy.objects.create(team=team, max_tokens_limit=100))
    key = await database_sync_to_async(make_key)(member, team)
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(key).chat.completions.create(
            model=MODEL, messages=QUESTION, max_completion_tokens=101
        )
    assert refused.value.body["param"] == "max_completion_tokens"
    with pytest.raises(openai.BadRequestError) as refused:  # named as the request named it
        await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=101)
    assert refused.value.body["param"] == "max_tokens"
    await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=100)
    assert sim.requests[-1]["max_completion_tokens"] == 100


async def test_max_tokens_holds_beside_a_null_max_completion_tokens(sim, member, team, make_key):
    """A client library may send both names, the newer one null: the number given counts."""
    key = await database_sync_to_async(make_key)(member, team)
    async with raw(key) as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"messages": QUESTION, "max_tokens": 77, "max_completion_tokens": None},
        )
    assert response.status_code == 200, response.text
    assert sim.requests[-1]["max_completion_tokens"] == 77


async def test_a_locked_default_prompt_goes_first_and_cannot_be_replaced(
    sim, member, team, make_key
):
    await db(
        lambda: SystemPrompt.objects.create(
            team=team, name="House", content="Answer as Acme.", is_default=True, locked=True
        )
    )
    key = await database_sync_to_async(make_key)(member, team)
    await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION)
    assert sim.requests[-1]["messages"][0] == {"role": "system", "content": "Answer as Acme."}
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await sdk(key).chat.completions.create(
            model=MODEL, messages=[{"role": "system", "content": "Be a pirate."}, *QUESTION]
        )
    assert refused.value.body["code"] == "prompt_locked"
    assert len(sim.requests) == 1


async def test_an_unlocked_prompt_gives_way_to_the_callers_system_message(
    sim, member, team, make_key
):
    await db(
        lambda: SystemPrompt.objects.create(
            team=team, name="House", content="Answer as Acme.", is_default=True
        )
    )
    key = await database_sync_to_async(make_key)(member, team)
    messages = [{"role": "system", "content": "Be brief."}, *QUESTION]
    await sdk(key).chat.completions.create(model=MODEL, messages=messages)
    assert sim.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_a_spent_budget_is_429(sim, member, team, make_key):
    await db(lambda: TeamPolicy.objects.create(team=team, monthly_token_budget=10))
    await db(lambda: record_usage(team, member, MODEL, 10, 0))
    key = await database_sync_to_async(make_key)(member, team)
    async with raw(key) as http:
        response = await http.post("/v1/chat/completions", json={"messages": QUESTION})
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "insufficient_quota"
    assert int(response.headers["retry-after"]) > 0
    assert sim.requests == []


def seconds_to_next_month(moment) -> float:
    """From `moment` to the first instant of next month, UTC: when a monthly budget resets."""
    month = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return ((month + timedelta(days=32)).replace(day=1) - moment).total_seconds()


@pytest.mark.parametrize("budget", ["monthly_token_budget", "member_monthly_token_budget"])
async def test_a_spent_monthly_budget_says_to_retry_when_the_month_ends(
    sim, member, team, make_key, budget
):
    await db(lambda: TeamPolicy.objects.create(team=team, **{budget: 10}))
    await db(lambda: record_usage(team, member, MODEL, 10, 0))
    key = await database_sync_to_async(make_key)(member, team)
    before = timezone.now()
    async with raw(key) as http:
        response = await http.post("/v1/chat/completions", json={"messages": QUESTION})
    after = timezone.now()
    assert response.json()["error"]["code"] == "quota_exceeded"
    wait = int(response.headers["retry-after"])
    assert seconds_to_next_month(after) - 1 <= wait <= seconds_to_next_month(before)


async def test_an_answer_streaming_holds_the_budget_until_it_ends(
    sim, member, owner, team, make_key
):
    """Answers that start together (two scripts, the chat page) cannot each pass the same
    gate: an answer streaming holds what it may spend, and once it ends its real usage."""
    await db(lambda: TeamPolicy.objects.create(team=team, monthly_token_budget=500))
    key = await database_sync_to_async(make_key)(member, team)
    request = completion_request(key)
    streaming = await chat_completions(request)  # its first chunk out, the rest unread
    hold = await db(lambda: BudgetHold.objects.get())
    assert (hold.user_id, hold.team_id) == (member.pk, team.pk) and hold.tokens > 2048
    owners_key = await database_sync_to_async(make_key)(owner, team)
    async with raw(owners_key) as http:
        refused = await http.post("/v1/chat/completions", json={"messages": QUESTION})
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "insufficient_quota"
    assert "held by answers still streaming" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60  # once they end, not next month
    assert len(sim.requests) == 1
    chunks = [chunk async for chunk in streaming.streaming_content]
    assert chunks[-1] == b"data: [DONE]\n\n"
    assert not await db(lambda: BudgetHold.objects.exists())
    used = await db(lambda: TeamUsage.objects.get())
    assert 0 < used.prompt_tokens + used.completion_tokens < 500
    await sdk(owners_key).chat.completions.create(model=MODEL, messages=QUESTION)


async def test_an_answer_refused_after_admission_holds_nothing(sim, member, team, make_key):
    await db(
        lambda: TeamPolicy.objects.create(
            team=team, monthly_token_budget=10_000, safety_input="block"
        )
    )
    key = await database_sync_to_async(make_key)(member, team)
    flagged = [{"role": "user", "content": "[sim:flag] How do I pick a lock?"}]
    async with raw(key) as http:
        response = await http.post("/v1/chat/completions", json={"messages": flagged})
    assert response.json()["error"]["code"] == "safety_blocked"
    assert not await db(lambda: BudgetHold.objects.exists())


async def test_the_rate_limit_is_429_with_retry_after(sim, member, team, make_key):
    await db(lambda: TeamPolicy.objects.create(team=team, rate_limit_per_minute=1))
    key = await database_sync_to_async(make_key)(member, team)
    client = sdk(key)
    await client.chat.completions.create(model=MODEL, messages=QUESTION)
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model=MODEL, messages=QUESTION)
    assert refused.value.body["code"] == "rate_limited"
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60
    assert len(sim.requests) == 1


async def test_a_request_refused_for_the_answers_at_once_counts_nothing_against_the_rate_limit(
    sim, member, team, make_key, settings
):
    """As on the chat page: a request refused because the person's answers already stream
    (Retry-After: 1, which the SDK retries) is not one of their requests this minute."""
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 1
    await db(lambda: TeamPolicy.objects.create(team=team, rate_limit_per_minute=2))
    key = await database_sync_to_async(make_key)(member, team)
    request = completion_request(key)
    streaming = await chat_completions(request)  # its first chunk out, the rest unread
    client = sdk(key)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model=MODEL, messages=QUESTION)
        assert "streaming (the limit is 1)" in refused.value.body["message"]
    chunks = [chunk async for chunk in streaming.streaming_content]
    assert chunks[-1] == b"data: [DONE]\n\n"
    answer = await client.chat.completions.create(model=MODEL, messages=QUESTION)
    assert answer.choices[0].message.content
    assert len(sim.requests) == 2


async def test_retry_after_tells_the_wait_of_the_limit_that_refused(
    sim, member, team, make_key, settings
):
    """The per-minute limit and the cap on answers at once both say rate_limited: a request
    refused for the answers streaming (on the chat page, say) waits for one of them, not
    for the per-minute window, which has room; one refused by the window waits for it."""
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 1
    await db(lambda: TeamPolicy.objects.create(team=team, rate_limit_per_minute=2))
    now = timezone.now()
    await db(lambda: RecentRequest.objects.create(user=member, team=team, created_at=now))
    chat = await db(lambda: Conversation.objects.create(team=team, owner=member, model=MODEL))
    await db(
        lambda: Message.objects.create(conversation=chat, role="assistant", status="streaming")
    )
    key = await database_sync_to_async(make_key)(member, team)
    async with raw(key) as http:
        refused = await http.post("/v1/chat/completions", json={"messages": QUESTION})
    assert "streaming (the limit is 1)" in refused.json()["error"]["message"]
    assert refused.headers["retry-after"] == "1"
    await db(lambda: Message.objects.update(status="complete"))
    await db(lambda: RecentRequest.objects.create(user=member, team=team, created_at=now))
    async with raw(key) as http:
        refused = await http.post("/v1/chat/completions", json={"messages": QUESTION})
    assert "2 messages a minute" in refused.json()["error"]["message"]
    assert 50 <= int(refused.headers["retry-after"]) <= 60
    assert not sim.requests


async def test_a_team_header_picks_another_of_ones_teams(sim, member, team, make_key):
    other = await db(lambda: Team.objects.create(name="Labs"))
    await db(lambda: Membership.objects.create(team=other, user=member, role=Role.MEMBER))
    stranger = await db(lambda: Team.objects.create(name="Elsewhere"))
    key = await database_sync_to_async(make_key)(member, team)
    await sdk(key, **{"X-Team-Id": str(other.pk)}).chat.completions.create(
        model=MODEL, messages=QUESTION
    )
    assert await db(lambda: TeamUsage.objects.get().team_id) == other.pk
    with pytest.raises(openai.NotFoundError) as refused:
        await sdk(key, **{"X-Team-Id": str(stranger.pk)}).models.list()
    assert refused.value.body["code"] == "team_not_found"


async def test_a_key_whose_owner_left_its_team_falls_back_to_their_other_team(
    sim, member, team, make_key
):
    key = await database_sync_to_async(make_key)(member, team)
    await db(lambda: Membership.objects.filter(team=team, user=member).delete())
    await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION)
    usage = await db(lambda: TeamUsage.objects.select_related("team").get())
    assert usage.team_id != team.pk and usage.team.personal_owner_id == member.pk


async def test_fields_with_no_upstream_meaning_are_accepted_and_not_sent(
    sim, member, team, make_key
):
    ignored = {
        "user": "u-1",
        "safety_identifier": "u-1",
        "prompt_cache_key": "chat-7",
        "seed": 7,
        "store": False,
        "metadata": {"run": "nightly"},
        "service_tier": "auto",
        "parallel_tool_calls": True,
    }
    key = await database_sync_to_async(make_key)(member, team)
    answer = await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION, **ignored)
    assert answer.choices[0].message.content
    assert not ignored.keys() & sim.requests[-1].keys()


@pytest.mark.parametrize("field", ["user", "safety_identifier", "prompt_cache_key"])
@pytest.mark.parametrize("value", ['"u\\u0000-1"', '"\\ud83d"', "7", '["u-1"]'])
async def test_an_end_user_id_that_is_not_text_is_400_and_nothing_goes_upstream(
    sim, member, team, make_key, field, value
):
    """Ignored, but not whatever it holds: NUL, a lone surrogate (sent escaped: JSON can carry
    them, UTF-8 cannot) or another type than a string is refused, as OpenAI's API does."""
    key = await database_sync_to_async(make_key)(member, team)
    await refused_field(key, {"messages": QUESTION}, field, value)
    assert sim.requests == []


async def test_unsupported_fields_set_to_their_defaults_are_accepted(sim, member, team, make_key):
    """Clients that spell out OpenAI's defaults ask for nothing this API does not do."""
    defaults = {
        "modalities": ["text"],
        "logprobs": False,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logit_bias": {},
        "audio": None,
    }
    key = await database_sync_to_async(make_key)(member, team)
    answer = await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION, **defaults)
    assert answer.choices[0].message.content
    assert not defaults.keys() & sim.requests[-1].keys()
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(key).chat.completions.create(
            model=MODEL, messages=QUESTION, modalities=["text", "audio"]
        )
    assert (refused.value.body["code"], refused.value.body["param"]) == (
        "unsupported_parameter",
        "modalities",
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].image_url",
        ),
        ({"messages": QUESTION, "functions": [{"name": "f"}]}, "functions"),
        # Two refused at once: the first in the body is named, whatever the hash seed.
        ({"messages": QUESTION, "logprobs": True, "top_logprobs": 2}, "logprobs"),
        ({"messages": QUESTION, "top_logprobs": 2, "logprobs": True}, "top_logprobs"),
        ({"messages": QUESTION, "n": 2}, "n"),
        ({"messages": QUESTION, "n": True}, "n"),
        ({"messages": QUESTION, "n": 1.0}, "n"),
        ({"messages": QUESTION, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": QUESTION, "stream": False, "stream_options": {}}, "stream_options"),
        ({"messages": QUESTION, "stream": True, "stream_options": []}, "stream_options"),
        ({"messages": QUESTION, "stream": "yes"}, "stream"),
        ({"messages": QUESTION, "temperature": "hot"}, "temperature"),
        ({"messages": QUESTION, "temperature": 7}, "temperature"),
        # Whole numbers too large for a float.
        ({"messages": QUESTION, "temperature": 10**400}, "temperature"),
        ({"messages": QUESTION, "top_p": -(10**400)}, "top_p"),
        ({"messages": QUESTION, "bogus": 1}, "bogus"),
        ({"messages": [{"role": "user", "content": "a\x00b"}]}, "messages[0].content"),
        # Blank questions, as on the chat page.
        ({"messages": [{"role": "user", "content": ""}]}, "messages"),
        ({"messages": [{"role": "user", "content": None}]}, "messages"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": " \n"}]}]},
            "messages",
        ),
    ],
)
async def test_bad_bodies_are_400_and_nothing_goes_upstream(
    sim, member, team, make_key, body, param
):
    key = await database_sync_to_async(make_key)(member, team)
    async with raw(key) as http:
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert sim.requests == []
    assert not await db(lambda: TeamUsage.objects.exists())


async def test_not_json_and_wrong_methods(sim, member, team, make_key):
    key = await database_sync_to_async(make_key)(member, team)
    async with raw(key) as http:
        broken = await http.post(
            "/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}
        )
        wrong = await http.get("/v1/chat/completions")
        wrong_models = await http.post("/v1/models")
        deep = await http.post(
            "/v1/chat/completions",
            content=b"[" * 100_000 + b"]" * 100_000,  # past the JSON parser's depth
            headers={"content-type": "application/json"},
        )
        unknown = await http.post("/v1/embeddings", json={"input": "hi"})
    assert broken.status_code == deep.status_code == 400
    assert broken.json()["error"]["type"] == deep.json()["error"]["type"] == "invalid_request_error"
    assert wrong.status_code == wrong_models.status_code == 405
    # HTTP requires a 405 to say which methods the address takes.
    assert (wrong.headers.get("allow"), wrong_models.headers.get("allow")) == ("POST", "GET")
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "invalid_request_error"
    assert "/v1/embeddings" in unknown.json()["error"]["message"]
    assert sim.requests == []


@pytest.mark.parametrize("value", ["²".encode("latin-1"), b"1.5", b"-2", b"9" * 5000])
async def test_a_team_header_that_is_not_an_id_is_400(sim, member, team, make_key, value):
    key = await database_sync_to_async(make_key)(member, team)
    async with raw(key) as http:
        response = await http.get("/v1/models", headers={"X-Team-Id": value})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "X-Team-Id"


async def test_an_upstream_failure_is_an_openai_error(sim, member, team, make_key):
    key = await database_sync_to_async(make_key)(member, team)
    with pytest.raises(openai.APIStatusError) as failed:
        await sdk(key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "[sim:fault=400] hi"}]
        )
    assert failed.value.status_code == 502
    assert failed.value.body["type"] == "api_error"


async def test_ones_own_monthly_limit_is_429_for_that_person_only(
    sim, member, owner, team, make_key
):
    await db(lambda: TeamPolicy.objects.create(team=team, member_monthly_token_budget=10))
    await db(lambda: record_usage(team, member, MODEL, 10, 0))
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk(await database_sync_to_async(make_key)(member, team)).chat.completions.create(
            model=MODEL, messages=QUESTION
        )
    assert refused.value.body["type"] == "insufficient_quota"
    assert "your monthly limit" in refused.value.body["message"]
    owners_key = await database_sync_to_async(make_key)(owner, team)
    await sdk(owners_key).chat.completions.create(model=MODEL, messages=QUESTION)


async def test_messages_too_long_for_the_model_are_a_400_the_sdk_does_not_retry(
    sim, member, team, make_key
):
    key = await database_sync_to_async(make_key)(member, team)
    client = sdk(key).with_options(max_retries=2)  # the SDK's default: it retries 5xx
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "[sim:fault=context_too_long] hi"}]
        )
    assert refused.value.body["code"] == "context_length_exceeded"  # OpenAI's code
    assert refused.value.body["type"] == "invalid_request_error"
    assert refused.value.body["param"] == "messages"
    assert len(sim.requests) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_messages_beyond_the_models_window_are_refused_not_trimmed(
    sim, member, team, make_key, stream
):
    """A client wrote every turn and expects the model to read them all, as OpenAI's API
    does: its oldest turns are not dropped behind its back (the answer would be about what is
    left), the request is refused before anything goes upstream or counts."""
    key = await database_sync_to_async(make_key)(member, team)
    messages = [
        {"role": "user", "content": "Remember this report. " + "word " * 120_000},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What did the report say?"},
    ]
    with pytest.raises(openai.BadRequestError) as refused:
        answer = await sdk(key).chat.completions.create(
            model=MODEL, messages=messages, stream=stream
        )
        if stream:
            [chunk async for chunk in answer]
    body = refused.value.body
    assert (body["code"], body["type"], body["param"]) == (
        "context_length_exceeded",
        "invalid_request_error",
        "messages",
    )
    assert "too long for the model's context window" in body["message"]
    assert sim.requests == []
    assert not await db(lambda: TeamUsage.objects.exists())
    assert member.pk not in LIVE_PER_USER


@pytest.mark.parametrize("stream", [False, True])
async def test_one_message_beyond_the_models_window_is_refused_before_it_goes_upstream(
    sim, member, team, make_key, settings, stream
):
    """The last turn is never dropped, so one message longer than the window alone would go
    upstream and be refused there: it is refused here, before it goes or counts."""
    settings.LLAMA_DEFAULT_MODEL = "my-local-model"  # 8,192 tokens
    key = await database_sync_to_async(make_key)(member, team)
    messages = [{"role": "user", "content": "word " * 20_000}]  # about 25,000 tokens
    with pytest.raises(openai.BadRequestError) as refused:
        answer = await sdk(key).chat.completions.create(
            model="my-local-model", messages=messages, stream=stream
        )
        if stream:
            [chunk async for chunk in answer]
    body = refused.value.body
    assert (body["code"], body["type"], body["param"]) == (
        "context_length_exceeded",
        "invalid_request_error",
        "messages",
    )
    assert "too long for the model's context window" in body["message"]
    assert sim.requests == []
    assert not await db(lambda: TeamUsage.objects.exists())
    assert member.pk not in LIVE_PER_USER


def report(text: str) -> list[dict]:
    """A long report, then a question about it: a request whose every turn must fit."""
    return [
        {"role": "user", "content": f"Remember this report. {text}"},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What did the report say?"},
    ]


async def test_the_window_a_request_must_fit_is_the_one_the_operator_gave(
    sim, member, team, make_key, settings
):
    """LLAMA_MODEL_CONTEXT overrides the known window: 8,000 tokens, 1,000 kept for the answer."""
    settings.LLAMA_MODEL_CONTEXT = {MODEL: 8000}
    client = sdk(await database_sync_to_async(make_key)(member, team))
    fits = report("word " * 5000)  # about 6,250 tokens
    answer = await client.chat.completions.create(model=MODEL, messages=fits, max_tokens=1000)
    assert answer.choices[0].message.content
    too_long = report("word " * 6000)  # about 7,500 tokens
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model=MODEL, messages=too_long, max_tokens=1000)
    assert refused.value.body["code"] == "context_length_exceeded"
    assert "about 7,000 tokens" in refused.value.body["message"]
    assert len(sim.requests) == 1


async def test_an_unknown_model_reads_the_window_the_operator_gave(
    sim, member, team, make_key, settings
):
    """A local model the site knows nothing of is guessed to read 8,192 tokens, unless the
    operator says more: then a longer request goes upstream whole."""
    settings.LLAMA_DEFAULT_MODEL = "my-local-model"
    client = sdk(await database_sync_to_async(make_key)(member, team))
    messages = report("word " * 20_000)  # about 25,000 tokens
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="my-local-model", messages=messages)
    assert refused.value.body["code"] == "context_length_exceeded"
    assert sim.requests == []
    settings.LLAMA_MODEL_CONTEXT = {"my-local-model": 131_072}
    with contextlib.suppress(openai.InternalServerError):  # the simulator serves Llama models
        await client.chat.completions.create(model="my-local-model", messages=messages)
    assert sim.requests[-1]["model"] == "my-local-model"
    assert sim.requests[-1]["messages"] == messages


@pytest.mark.parametrize(
    ("fault", "stream"), [("context_too_long", False), ("cut after=3", True), ("500", False)]
)
async def test_errors_tell_an_api_caller_what_to_do_in_the_apis_words(
    sim, member, team, make_key, fault, stream
):
    """Not the chat page's: an API caller regenerates nothing and has no conversation."""
    key = await database_sync_to_async(make_key)(member, team)
    async with raw(key) as http:
        response = await http.post(
            "/v1/chat/completions",
            json={
                "model": MODEL,
                "stream": stream,
                "messages": [{"role": "user", "content": f"[sim:fault={fault}] hi"}],
            },
        )
    if stream:
        error = json.loads(response.text.strip().splitlines()[-1].removeprefix("data: "))["error"]
    else:
        error = response.json()["error"]
    assert error["message"]
    for words in ("regenerate", "conversation"):
        assert words not in error["message"].lower()


async def test_a_refused_provider_key_sends_the_caller_to_the_teams_admins(
    sim, member, team, make_key
):
    """Nothing tells the admins of an API request's failure (no answer is kept to warn them
    by), so the caller is not told that they were."""
    key = await database_sync_to_async(make_key)(member, team)
    with pytest.raises(openai.APIStatusError) as failed:
        await sdk(key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "[sim:fault=401] hi"}]
        )
    assert failed.value.status_code == 502
    assert failed.value.body["code"] == "auth_failed"
    assert "have been told" not in failed.value.body["message"]
    assert "ask your team's owners or admins" in failed.value.body["message"]


@pytest.mark.parametrize(
    ("fault", "code", "retried"),
    [
        ("401", "auth_failed", False),
        ("400", "bad_request", False),
        ("503", "upstream_unavailable", True),
    ],
)
async def test_the_sdk_retries_only_the_upstream_failures_that_trying_again_may_mend(
    sim, member, team, make_key, settings, fault, code, retried
):
    """The official SDKs retry every 5xx twice unless `x-should-retry: false` says not to: a
    refused provider key or request would go upstream three times for one call."""
    settings.LLAMA_MAX_ATTEMPTS = 1
    key = await database_sync_to_async(make_key)(member, team)
    client = sdk(key).with_options(max_retries=2)
    question = [{"role": "user", "content": f"[sim:fault={fault} retry_after=0] hi"}]
    with pytest.raises(openai.APIStatusError) as failed:
        await client.chat.completions.create(model=MODEL, messages=question)
    assert (failed.value.status_code, failed.value.body["code"]) == (502, code)
    assert failed.value.response.headers.get("x-should-retry") == (None if retried else "false")
    assert len(sim.requests) == (3 if retried else 1)


@pytest.mark.parametrize(
    ("directive", "status"), [("fault=401", 502), ("fault=503", 502), ("fault=stall", 504)]
)
async def test_an_own_servers_failure_names_that_server_not_the_llama_api(
    sim, member, team, make_key, settings, directive, status
):
    settings.LLAMA_API_PROTOCOL = "openai"
    settings.LLAMA_API_BASE_URL = sim.openai_url
    settings.LLAMA_MAX_ATTEMPTS = 1
    settings.LLAMA_TIMEOUTS = {**settings.LLAMA_TIMEOUTS, "first_token_timeout": 1}
    key = await database_sync_to_async(make_key)(member, team)
    with pytest.raises(openai.APIStatusError) as failed:
        await sdk(key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"[sim:{directive}] hi"}]
        )
    assert failed.value.status_code == status
    assert "The model server at 127.0.0.1" in failed.value.body["message"]
    assert "Llama API" not in failed.value.body["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_calls_though_no_tools_were_offered_are_dropped(
    sim, member, team, make_key, stream
):
    """A model (or server) that calls a tool anyway: nothing runs, as on the chat page, and
    the client gets the answer's end, not a 500 or a broken stream."""
    key = await database_sync_to_async(make_key)(member, team)
    messages = [{"role": "user", "content": "[sim:call=get_weather anyway] Weather in Nice?"}]
    client = sdk(key)
    if stream:
        response = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
        chunks = [chunk async for chunk in response]
        assert not any(chunk.choices[0].delta.tool_calls for chunk in chunks)
        reason = chunks[-1].choices[0].finish_reason
    else:
        answer = await client.chat.completions.create(model=MODEL, messages=messages)
        assert answer.choices[0].message.tool_calls is None
        reason = answer.choices[0].finish_reason
    assert reason == "stop"  # "tool_calls" promises calls the client never gets
    assert "tools" not in sim.requests[-1]
    assert (await db(lambda: TeamUsage.objects.get())).requests == 1


async def test_a_client_gone_before_the_first_byte_frees_its_place_and_is_counted(
    sim, member, team, make_key
):
    """The client leaves between the view's return and the response's first byte: the stream
    is never read, yet the answer's place is freed and the request counted."""
    key = await database_sync_to_async(make_key)(member, team)
    body = json.dumps({"model": MODEL, "messages": QUESTION, "stream": True}).encode()
    gone = asyncio.Event()
    requests = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def receive() -> dict:
        request = next(requests, None)
        if request is not None:
            return request
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            gone.set()  # the connection drops as the headers go out
            await asyncio.Event().wait()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await application(scope, receive, send)
    await until_ended(member)  # when Django closes the response


async def test_a_client_gone_before_the_first_token_counts_no_prompt(sim, member, team, make_key):
    """As on the chat page, a cut answer counts its prompt once tokens came: one stopped
    before any counts its request alone."""
    key = await database_sync_to_async(make_key)(member, team)
    question = [{"role": "user", "content": "Think first [sim:pace ttft=30]"}]
    asked = asyncio.ensure_future(chat_completions(completion_request(key, question)))
    await await_for(lambda: sim.active_streams == 1, "the answer to start upstream")
    asked.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asked
    await until_ended(member)
    usage = await db(lambda: TeamUsage.objects.get())
    assert (usage.prompt_tokens, usage.completion_tokens) == (0, 0)


async def test_a_stream_dropped_unread_and_unclosed_frees_its_place_once_collected(
    sim, member, team, make_key
):
    """Should the request end before Django closes the response (cancelled in a middleware),
    the collector's close of the stream ends the answer."""
    key = await database_sync_to_async(make_key)(member, team)
    request = completion_request(key)
    response = await chat_completions(request)
    assert LIVE_PER_USER[member.pk] == 1
    del response
    gc.collect()
    await until_ended(member)


async def until_ended(member) -> None:
    """The answer's place is free and its request counted."""
    for _ in range(500):  # a ceiling for a busy machine, never an expectation
        if member.pk not in LIVE_PER_USER and await db(lambda: TeamUsage.objects.exists()):
            break
        await asyncio.sleep(0.01)
    assert member.pk not in LIVE_PER_USER
    usage = await db(lambda: TeamUsage.objects.get())
    assert (usage.user_id, usage.requests) == (member.pk, 1)


async def test_a_client_gone_while_its_request_is_admitted_holds_nothing(
    sim, member, team, make_key, monkeypatch
):
    """The client leaves while its admission runs (queued behind the team's other admissions,
    say): the admission finishes in its thread all the same, and the tokens it held must not
    stay held against the budget until the hold expires (LLAMA_TOTAL_TIMEOUT plus the stale
    window: 12 minutes by default), refusing the team's other answers meanwhile."""
    import threading

    from chatapp.chat.actions import replies

    await db(lambda: TeamPolicy.objects.create(team=team, monthly_token_budget=100_000))
    key = await database_sync_to_async(make_key)(member, team)
    admitted, go = threading.Event(), threading.Event()
    admit_completion = replies.admit_completion

    def slow_admission(plan, take_place):
        plan = admit_completion(plan, take_place)
        admitted.set()
        go.wait(10)  # the client leaves meanwhile
        return plan

    monkeypatch.setattr(replies, "admit_completion", slow_admission)
    request = completion_request(key, stream=False)
    view = asyncio.ensure_future(chat_completions(request))
    await asyncio.to_thread(admitted.wait, 10)
    view.cancel()  # as Django cancels a view whose client has disconnected
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await view
    for _ in range(100):  # the admission's thread, and whatever it left to do, has finished
        await asyncio.sleep(0.02)
    assert not await db(lambda: BudgetHold.objects.exists())
    assert member.pk not in LIVE_PER_USER
    assert sim.requests == []


SLOW = "[sim:long tokens=400] [sim:pace tps=40]"


@pytest.mark.parametrize("how", ["removed", "left", "key revoked", "key expired", "deactivated"])
async def test_a_streaming_answer_stops_when_its_caller_loses_access(
    sim, member, owner, team, make_key, monkeypatch, how
):
    """As on the chat page, an answer of someone removed from the team (or whose key is
    revoked, or account deactivated) stops there, rather than spend the team's tokens to its
    end; what it streamed counts."""
    from chatapp.chat import openai_api
    from chatapp.teams import actions as team_actions

    monkeypatch.setattr(openai_api, "ACCESS_CHECK_SECONDS", 0)  # each chunk checks
    key = await database_sync_to_async(make_key)(member, team)
    request = completion_request(key, [{"role": "user", "content": SLOW}])
    response = await chat_completions(request)
    chunks = aiter(response.streaming_content)
    for _ in range(3):
        await anext(chunks)

    def lose_access() -> None:
        mine = Membership.objects.get(team=team, user=member)
        if how == "removed":
            team_actions.remove_member(Membership.objects.get(team=team, user=owner), mine)
        elif how == "left":
            team_actions.leave_team(mine)
        elif how == "key revoked":
            team_actions.revoke_api_key(member, ApiKey.objects.get())
        elif how == "key expired":  # the end of the last day it works passed
            ApiKey.objects.update(expires_at=timezone.now())
        else:
            member.is_active = False
            member.save()

    await db(lose_access)
    rest = [chunk.decode() async for chunk in chunks]
    assert "[DONE]" not in rest[-1]
    error = json.loads(rest[-1].removeprefix("data: "))["error"]
    assert error["code"] == "forbidden" and error["type"] == "permission_error"
    why = {"key revoked": "revoked", "key expired": "expired", "deactivated": "deactivated"}
    assert why.get(how, "no longer a member") in error["message"]
    if how == "key expired":
        assert "revoked" not in error["message"]
    texts = [c for c in rest if c.startswith("data: ") and '"content"' in c]
    assert len(texts) < 390
    usage = await db(lambda: TeamUsage.objects.get())
    assert usage.completion_tokens > 0


class SlowToClose:
    """The upstream stream, whose closing (its connection let go) takes a while: `closing` is
    set as it starts, and it ends once `go` is."""

    def __init__(self, events):
        self.events, self.closing, self.go = events, asyncio.Event(), asyncio.Event()

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await anext(self.events)

    async def aclose(self) -> None:
        self.closing.set()
        await self.go.wait()
        await self.events.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_gone_as_the_upstream_closes_is_counted_once_and_kept_whole(
    sim, member, team, make_key, monkeypatch, stream
):
    """The answer has ended upstream and is being closed and counted when its client goes:
    the cancel must not stop the counting half way (nothing counted, its place and its hold
    kept), nor count it twice when the response is closed after."""
    await db(lambda: TeamPolicy.objects.create(team=team, monthly_token_budget=100_000))
    key = await database_sync_to_async(make_key)(member, team)
    request = AsyncRequestFactory().post(
        "/v1/chat/completions",
        {"model": MODEL, "messages": QUESTION, "stream": stream},
        content_type="application/json",
        headers={"authorization": f"Bearer {key}", "x-save-conversation": "1"},
    )
    upstream: list[SlowToClose] = []
    start_answer = openai_api.start_answer

    async def slow_to_close(*args):
        answer = await start_answer(*args)
        answer.events = SlowToClose(answer.events)
        upstream.append(answer.events)
        return answer

    monkeypatch.setattr(openai_api, "start_answer", slow_to_close)
    response = None
    if stream:
        response = await chat_completions(request)
        asked = asyncio.ensure_future(read_all(response.streaming_content))
    else:
        asked = asyncio.ensure_future(chat_completions(request))
    await await_for(lambda: bool(upstream), "the answer to start")
    await upstream[0].closing.wait()  # the answer ended upstream: it is being closed
    asked.cancel()  # the client goes, just then
    upstream[0].go.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asked
    if response is not None:
        response.close()  # as Django closes the response: the answer is counted already
    await until_ended(member)
    assert not await db(lambda: BudgetHold.objects.exists())
    saved = await db(lambda: Message.objects.get(role="assistant"))
    assert (saved.status, saved.finish_reason) == ("complete", "stop")
    usage = await db(lambda: TeamUsage.objects.get())
    assert usage.completion_tokens == saved.completion_tokens > 0


async def read_all(chunks) -> None:
    async for _ in chunks:
        pass
