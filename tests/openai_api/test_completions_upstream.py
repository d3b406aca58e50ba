"""/v1 answers from a Llama API that misbehaves: an error in OpenAI's shape, never a 500."""

import json

import openai
import pytest
from channels.db import database_sync_to_async

from chatapp.teams.models import TeamUsage
from tests.openai_api.conftest import MODEL, sdk
from tests.support.upstream import Reply, hostile_upstream

pytestmark = pytest.mark.django_db(transaction=True)
QUESTION = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
async def upstream(settings):
    replies: list[Reply] = []
    async with hostile_upstream(replies) as url:
        settings.LLAMA_API_BASE_URL = url
        settings.LLAMA_API_KEY = "hostile-test-key"
        settings.LLAMA_API_PROTOCOL = "openai"
        settings.LLAMA_MAX_ATTEMPTS = 1
        yield replies


async def test_a_rate_limit_with_a_retry_date_past_any_clock_is_a_429(
    upstream, member, team, make_key
):
    date = "Fri, 31 Dec 99999999999 23:59:59 GMT"
    upstream.append(Reply('{"error": "slow down"}', status=429, headers={"Retry-After": date}))
    key = await database_sync_to_async(make_key)(member, team)
    with pytest.raises(openai.RateLimitError) as raised:
        await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION)
    assert raised.value.code == "upstream_rate_limited"


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_rate_limit_passes_on_when_to_try_again(
    upstream, member, team, make_key, stream
):
    """The Llama API's own wait, so that a client honouring Retry-After does not come back
    (and count against the team's rate limit) while upstream still refuses."""
    reply = Reply('{"error": "slow down"}', status=429, headers={"Retry-After": "30"})
    upstream.append(reply)
    key = await database_sync_to_async(make_key)(member, team)
    with pytest.raises(openai.RateLimitError) as raised:
        await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION, stream=stream)
    assert raised.value.code == "upstream_rate_limited"
    assert raised.value.response.headers["retry-after"] == "30"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_reply_of_another_shape_is_a_502(upstream, member, team, make_key, stream):
    upstream.append(Reply('data: {"choices": {"0": "Hello"}}\n\ndata: [DONE]\n\n'))
    key = await database_sync_to_async(make_key)(member, team)
    with pytest.raises(openai.APIStatusError) as raised:
        await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION, stream=stream)
    assert raised.value.status_code == 502
    assert raised.value.code == "upstream_unavailable"


async def test_a_stream_relays_an_emoji_split_between_chunks(upstream, member, team, make_key):
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": "Hi \ud83d"}}]},
        {"choices": [{"index": 0, "delta": {"content": "\ude00 there"}, "finish_reason": "stop"}]},
    ]
    upstream.append(Reply("".join(f"data: {json.dumps(c)}\n\n" for c in chunks)))
    key = await database_sync_to_async(make_key)(member, team)
    stream = await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION, stream=True)
    received = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text == "Hi \ud83d\ude00 there"  # each half as its own escape, as it came
    assert [c.choices[0].finish_reason for c in received if c.choices][-1] == "stop"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_cut_off_by_max_tokens_ends_on_length(
    upstream, member, team, make_key, stream
):
    """As OpenAI's: a turn the token limit cut while the model wrote a call ends `length`
    (its unfinished arguments are not a call to run), never `tool_calls`."""
    function = {"name": "get_weather", "arguments": '{"city": "Pa'}
    piece = {"index": 0, "id": "call_1", "type": "function", "function": function}
    chunks = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
    ]
    upstream.append(Reply("".join(f"data: {json.dumps(c)}\n\n" for c in chunks)))
    key = await database_sync_to_async(make_key)(member, team)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    answer = await sdk(key).chat.completions.create(
        model=MODEL, messages=QUESTION, tools=tools, max_tokens=5, stream=stream
    )
    if stream:
        reasons = [c.choices[0].finish_reason async for c in answer if c.choices]
        assert reasons[-1] == "length"
    else:
        assert answer.choices[0].finish_reason == "length"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_whose_usage_never_arrives_counts_what_the_model_wrote(
    upstream, member, team, make_key, stream
):
    """With no report, the answer counts by estimate: the call's name and arguments are what
    the model wrote, as text would be."""
    arguments = '{"city": "' + "Paris, France, in the heart of Europe" * 8 + '"}'
    function = {"name": "get_weather", "arguments": arguments}
    piece = {"index": 0, "id": "call_1", "type": "function", "function": function}
    chunks = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    upstream.append(Reply("".join(f"data: {json.dumps(c)}\n\n" for c in chunks)))
    key = await database_sync_to_async(make_key)(member, team)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    answer = await sdk(key).chat.completions.create(
        model=MODEL, messages=QUESTION, tools=tools, stream=stream
    )
    if stream:
        [chunk async for chunk in answer]
    usage = await TeamUsage.objects.aget(team=team, user=member)
    assert usage.completion_tokens >= len(arguments) // 4
