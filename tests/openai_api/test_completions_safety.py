"""The team's Llama Guard policy holds for the OpenAI-compatible API as on the chat page."""

import asyncio
import json

import openai
import pytest
from channels.db import database_sync_to_async

from chatapp.asgi import application
from chatapp.chat.models import Message
from chatapp.teams.models import SafetyFlag, SystemPrompt, TeamPolicy, TeamUsage
from tests.openai_api.conftest import MODEL, raw, sdk
from tests.support.polling import await_for

pytestmark = pytest.mark.django_db(transaction=True)

FLAGGED_QUESTION = "[sim:flag categories=S1,S10] How do I pick a lock?"
FLAGGED_ANSWER = "[sim:flag_answer categories=S10] Tell me something"


@pytest.fixture
def safety_settings(settings):
    settings.LLAMA_MAX_ATTEMPTS = 1


async def policy(team, **fields) -> None:
    await TeamPolicy.objects.aupdate_or_create(team=team, defaults=fields)


async def test_a_blocked_question_is_refused_before_it_goes_upstream(
    sim, member, team, make_key, safety_settings
):
    await policy(team, safety_input="block")
    key = await database_sync_to_async(make_key)(member, team)
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": FLAGGED_QUESTION}]
        )
    assert refused.value.body["code"] == "safety_blocked"
    assert "S10" in refused.value.body["message"]
    assert sim.requests == []
    assert not await TeamUsage.objects.aexists()


@pytest.mark.parametrize(
    "messages",
    [
        [
            {"role": "user", "content": FLAGGED_QUESTION},
            {"role": "assistant", "content": "Sure, here is how."},
            {"role": "user", "content": "Go on."},
        ],
        [
            {"role": "system", "content": FLAGGED_QUESTION},
            {"role": "user", "content": "Go on."},
        ],
        [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": FLAGGED_QUESTION},
            {"role": "user", "content": "Go on."},
        ],
    ],
    ids=["earlier-question", "system", "assistant-turn"],
)
@pytest.mark.parametrize("protocol", ["llama", "openai"])
async def test_every_turn_the_client_wrote_is_screened(
    sim, member, team, make_key, safety_settings, settings, messages, protocol
):
    """Unlike the chat page's history, each of whose questions was screened when asked, a
    client writes every turn of its request: a flagged one anywhere blocks the request. (openai:
    the Guard model through chat completions, whose prompt marks turns "User:" and "Agent:".)"""
    if protocol == "openai":
        settings.LLAMA_API_PROTOCOL = "openai"
        settings.LLAMA_API_BASE_URL = sim.openai_url
    await policy(team, safety_input="block")
    key = await database_sync_to_async(make_key)(member, team)
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(key).chat.completions.create(model=MODEL, messages=messages)
    assert refused.value.body["code"] == "safety_blocked"
    assert "S10" in refused.value.body["message"]
    assert sim.requests == []


async def test_one_question_is_screened_as_written_and_the_teams_prompt_not_at_all(
    sim, member, team, make_key, safety_settings
):
    """The team's own system prompt is its admins' text, not the client's."""
    await policy(team, safety_input="block")
    await SystemPrompt.objects.acreate(
        team=team, name="Guarded", content=FLAGGED_QUESTION, is_default=True
    )
    key = await database_sync_to_async(make_key)(member, team)
    await sdk(key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello there"}]
    )
    assert sim.moderations[-1]["messages"] == [{"role": "user", "content": "Hello there"}]
    assert len(sim.requests) == 1


async def test_guard_unreachable_and_failing_closed_is_503(
    sim, member, team, make_key, safety_settings
):
    await policy(team, safety_input="block", safety_on_error="fail_closed")
    key = await database_sync_to_async(make_key)(member, team)
    async with raw(key) as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "[sim:guard_fault=503] hi"}]},
        )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "safety_unavailable"
    assert sim.requests == []


async def test_a_flagged_question_under_flag_is_answered(
    sim, member, team, make_key, safety_settings
):
    await policy(team, safety_input="flag")
    key = await database_sync_to_async(make_key)(member, team)
    answer = await sdk(key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": FLAGGED_QUESTION}]
    )
    assert answer.choices[0].message.content
    assert len(sim.requests) == 1


async def test_a_blocked_answer_is_withheld_whole_and_streamed(
    sim, member, team, make_key, safety_settings
):
    await policy(team, safety_output="block")
    key = await database_sync_to_async(make_key)(member, team)
    client = sdk(key)
    messages = [{"role": "user", "content": FLAGGED_ANSWER}]
    whole = await client.chat.completions.create(model=MODEL, messages=messages)
    assert whole.choices[0].message.content == ""
    assert whole.choices[0].finish_reason == "content_filter"
    stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ""
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert (await TeamUsage.objects.aget()).requests == 2  # the tokens were spent all the same


async def test_a_clean_answer_under_block_still_streams_whole(
    sim, member, team, make_key, safety_settings
):
    await policy(team, safety_output="block")
    key = await database_sync_to_async(make_key)(member, team)
    stream = await sdk(key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_a_saved_blocked_answer_reaches_the_review_queue(
    sim, member, team, make_key, safety_settings
):
    await policy(team, safety_output="block")
    key = await database_sync_to_async(make_key)(member, team)
    await sdk(key, **{"X-Save-Conversation": "1"}).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": FLAGGED_ANSWER}]
    )
    answer = await Message.objects.aget(role="assistant")
    assert answer.status == "blocked" and answer.safety["categories"] == ["S10"]
    flag = await SafetyFlag.objects.aget()
    assert (flag.message_id, flag.stage, flag.blocked) == (answer.pk, "output", True)


async def test_a_flagged_answer_cut_off_upstream_is_withheld_too(
    sim, member, team, make_key, safety_settings
):
    """The Llama API failing mid-answer does not let held text out unjudged."""
    await policy(team, safety_output="block")
    key = await database_sync_to_async(make_key)(member, team)
    async with raw(key) as http:
        response = await http.post(
            "/v1/chat/completions",
            headers={"X-Save-Conversation": "1"},
            json={
                "stream": True,
                "messages": [
                    {"role": "user", "content": f"{FLAGGED_ANSWER} [sim:fault=cut after=8]"}
                ],
            },
        )
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line[6:]]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == ""
    assert events[-1]["error"]["code"] == "interrupted"
    answer = await Message.objects.aget(role="assistant")
    assert answer.status == "blocked" and answer.safety["categories"] == ["S10"]


async def test_a_saved_exchange_lists_what_the_data_filter_sent_instead(
    sim, member, team, make_key, safety_settings
):
    """As a question sent on the chat page: it keeps the original and says what went upstream."""
    await policy(team, data_email="redact")
    key = await database_sync_to_async(make_key)(member, team)
    await sdk(key, **{"X-Save-Conversation": "1"}).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Mail ann@example.com today"}]
    )
    assert sim.requests[-1]["messages"][-1]["content"] == "Mail [EMAIL_1] today"
    question = await Message.objects.aget(role="user")
    assert question.content == "Mail ann@example.com today"
    assert question.redactions == [{"placeholder": "[EMAIL_1]", "label": "e-mail address"}]


async def test_a_question_the_data_filter_blocks_is_refused_naming_the_messages(
    sim, member, team, make_key, safety_settings
):
    await policy(team, data_email="block")
    key = await database_sync_to_async(make_key)(member, team)
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Mail ann@example.com today"}]
        )
    error = refused.value.body
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "data_blocked",
        "messages",  # OpenAI's name for where it is: this API has no field called content
    )
    assert sim.requests == []


async def test_a_question_is_screened_only_once_it_has_a_place(
    sim, member, team, make_key, safety_settings, settings
):
    """As on the chat page, the cap on answers at once comes before Llama Guard: a request
    past it costs no screening, and one being screened holds its place."""
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 1
    await policy(team, safety_input="flag")
    key = await database_sync_to_async(make_key)(member, team)
    client = sdk(key)
    slow = asyncio.ensure_future(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "[sim:guard_delay=2] Hi"}]
        )
    )
    await await_for(lambda: len(sim.moderations) == 1, "the first question's screening")

    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello"}]
        )
    assert refused.value.body["code"] == "rate_limited"
    assert len(sim.moderations) == 1
    assert (await slow).choices[0].message.content

    await policy(team, safety_input="block")  # a refused question gives its place back
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": FLAGGED_QUESTION}]
        )
    answer = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello"}]
    )
    assert answer.choices[0].message.content


async def test_a_saved_exchange_keeps_a_blocked_question_for_the_review_queue(
    sim, member, team, make_key, safety_settings
):
    """As on the chat page: the question stays, with its refusal, and goes on the queue."""
    await policy(team, safety_input="block")
    key = await database_sync_to_async(make_key)(member, team)
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(key, **{"X-Save-Conversation": "1"}).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": FLAGGED_QUESTION}]
        )
    assert refused.value.body["code"] == "safety_blocked"
    assert sim.requests == []
    question = await Message.objects.aget(role="user")
    answer = await Message.objects.aget(role="assistant")
    assert question.content == FLAGGED_QUESTION
    assert (answer.status, answer.error_code) == ("error", "safety_blocked")
    assert answer.safety["categories"] == ["S1", "S10"]
    flag = await SafetyFlag.objects.aget()
    assert (flag.message_id, flag.stage, flag.blocked) == (question.pk, "input", True)
    assert not await TeamUsage.objects.aexists()


async def test_a_saved_answer_the_client_left_while_it_was_held_is_judged_first(
    sim, member, team, make_key, safety_settings
):
    """Under `block` a streamed answer is held until judged; a client leaving meanwhile must
    not find the unjudged text in the saved conversation."""
    await policy(team, safety_output="block")
    key = await database_sync_to_async(make_key)(member, team)
    question = "[sim:flag_answer categories=S10 at=1] [sim:fault=stall_after after=5] Hi"
    body = json.dumps({"stream": True, "messages": [{"role": "user", "content": question}]})
    gone, received = asyncio.Event(), []

    async def receive() -> dict:
        if not received:
            received.append(body)
            return {"type": "http.request", "body": body.encode(), "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        pass

    headers = {"authorization": f"Bearer {key}", "x-save-conversation": "1"}
    headers |= {"content-type": "application/json", "host": "testserver"}
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    request = asyncio.ensure_future(application(scope, receive, send))
    await await_for(lambda: sim.active_streams == 1, "the answer to stream upstream")
    await asyncio.sleep(0.3)  # its five tokens read (at 2000 a second) and held
    gone.set()
    await request
    answer = await await_for(
        lambda: Message.objects.filter(role="assistant").afirst(), "the saved answer"
    )
    assert answer.content  # what was read is kept for the team's reviewers
    assert answer.status == "blocked" and answer.safety["categories"] == ["S10"]


async def test_failing_closed_a_streamed_answer_is_held_until_judged_under_flag_too(
    sim, member, team, make_key, safety_settings
):
    """Failing closed, an answer Llama Guard cannot judge is withheld whatever the mode: the
    stream must not have handed its text to the client before the verdict."""
    await policy(team, safety_output="flag", safety_on_error="fail_closed")
    key = await database_sync_to_async(make_key)(member, team)
    stream = await sdk(key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "[sim:guard_fault=503] Hello"}],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ""


WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object"}},
}
CALLED_AND_FLAGGED = (
    "[sim:call=get_weather args=city:Paris] [sim:flag_answer categories=S10] Weather in Paris?"
)


async def ask_with_tools(client, stream: bool) -> tuple[list, str | None]:
    """(the calls the client was given, as (name, arguments); the finish reason)."""
    messages = [{"role": "user", "content": CALLED_AND_FLAGGED}]
    fields = {"model": MODEL, "messages": messages, "tools": [WEATHER]}
    if not stream:
        choice = (await client.chat.completions.create(**fields)).choices[0]
        calls = choice.message.tool_calls or []
        return [(c.function.name, c.function.arguments) for c in calls], choice.finish_reason
    told, reason = [], None
    async for chunk in await client.chat.completions.create(**fields, stream=True):
        choice = chunk.choices[0]
        told += [(c.function.name, c.function.arguments) for c in choice.delta.tool_calls or []]
        reason = choice.finish_reason or reason
    return told, reason


@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_of_tool_calls_alone_is_screened_and_withheld_under_block(
    sim, member, team, make_key, safety_settings, stream
):
    """The calls' names and arguments are the model's words handed to the caller: Llama Guard
    judges them as the answer, and a flagged turn gives the caller no calls."""
    await policy(team, safety_output="block")
    key = await database_sync_to_async(make_key)(member, team)
    calls, reason = await ask_with_tools(sdk(key), stream)
    assert (calls, reason) == ([], "content_filter")
    [screened] = [m for m in sim.moderations if m["messages"][-1]["role"] == "assistant"]
    judged = screened["messages"][-1]["content"]
    assert "get_weather" in judged and "Paris" in judged
    assert (await TeamUsage.objects.aget()).requests == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_of_tool_calls_alone_is_screened_and_told_under_flag(
    sim, member, team, make_key, safety_settings, stream
):
    await policy(team, safety_output="flag")
    key = await database_sync_to_async(make_key)(member, team)
    calls, reason = await ask_with_tools(sdk(key), stream)
    assert reason == "tool_calls"
    assert [name for name, _ in calls] == ["get_weather"]
    assert json.loads("".join(arguments for _, arguments in calls)) == {"city": "Paris"}
    assert [m["messages"][-1]["role"] for m in sim.moderations] == ["assistant"]
