"""The client's own functions on POST /v1/chat/completions: offered upstream as sent, their
calls handed back in OpenAI's shapes (whole and streamed), their results sent on, through the
official openai SDK."""

import json

import pytest
from channels.db import database_sync_to_async

from chatapp.chat.completions import read_request
from chatapp.chat.models import Conversation
from chatapp.chat.planning import plan_completion
from chatapp.llm import count_tokens_estimate
from chatapp.teams.models import TeamUsage
from tests.openai_api.conftest import MODEL, raw, sdk

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city today.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASKED = {"role": "user", "content": "[sim:call=get_weather args=city:Paris] Weather in Paris?"}


def db(function):
    return database_sync_to_async(function)()


async def key_for(make_key, member, team) -> str:
    return await database_sync_to_async(make_key)(member, team)


async def ask(client, messages: list, stream: bool, **fields) -> tuple[str | None, list, str]:
    """(the answer's text, its calls as OpenAI's dicts, its finish reason), read whole or
    pieced together from the chunks as a streaming client does."""
    if not stream:
        answer = await client.chat.completions.create(model=MODEL, messages=messages, **fields)
        message = answer.choices[0].message
        calls = [call.model_dump() for call in message.tool_calls or []]
        return message.content, calls, answer.choices[0].finish_reason
    chunks = await client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, **fields
    )
    text, calls, reason = "", {}, None
    async for chunk in chunks:
        choice = chunk.choices[0]
        text += choice.delta.content or ""
        for piece in choice.delta.tool_calls or []:
            call = calls.setdefault(piece.index, {"function": {"arguments": ""}})
            call["id"] = piece.id or call.get("id")
            call["type"] = piece.type or call.get("type")
            call["function"]["name"] = piece.function.name or call["function"].get("name")
            call["function"]["arguments"] += piece.function.arguments or ""
        reason = choice.finish_reason or reason
    return text or None, [calls[index] for index in sorted(calls)], reason


@pytest.mark.parametrize("protocol", ["llama", "openai"])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_of_the_clients_function_comes_back_and_its_result_is_answered(
    sim, member, team, make_key, settings, stream, protocol
):
    if protocol == "openai":  # the site's server speaks the OpenAI-compatible API instead
        settings.LLAMA_API_BASE_URL, settings.LLAMA_API_PROTOCOL = sim.openai_url, protocol
    client = sdk(await key_for(make_key, member, team))
    text, calls, reason = await ask(client, [ASKED], stream, tools=[WEATHER])
    assert reason == "tool_calls"
    assert not text
    [call] = calls
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    offered = sim.requests[-1]
    assert offered["tools"] == [WEATHER] and "tool_choice" not in offered

    # The client runs the function and sends its result back with the history.
    called = {"role": "assistant", "content": None, "tool_calls": calls}
    result = {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 °C"}
    text, calls, reason = await ask(client, [ASKED, called, result], stream, tools=[WEATHER])
    assert (text, calls, reason) == ("The tool answered: Sunny, 21 °C", [], "stop")
    *_, sent_call, sent_result = sim.requests[-1]["messages"]
    assert sent_result == result
    assert [c["id"] for c in sent_call["tool_calls"]] == [call["id"]]
    assert sent_call["tool_calls"][0]["function"] == call["function"]
    assert ("type" in sent_call["tool_calls"][0]) == (protocol == "openai")  # native: no type
    usage = await db(lambda: TeamUsage.objects.get())
    assert usage.requests == 2  # each turn is a request, counted for the key
    assert not await db(lambda: Conversation.objects.exists())


async def test_tool_choice_goes_upstream_with_the_tools(sim, member, team, make_key):
    client = sdk(await key_for(make_key, member, team))
    text, calls, reason = await ask(client, [ASKED], False, tools=[WEATHER], tool_choice="none")
    assert sim.requests[-1]["tool_choice"] == "none"
    assert text and calls == [] and reason == "stop"
    named = {"type": "function", "function": {"name": "get_weather"}}
    _, calls, reason = await ask(client, [ASKED], False, tools=[WEATHER], tool_choice=named)
    assert sim.requests[-1]["tool_choice"] == named
    assert reason == "tool_calls" and calls[0]["function"]["name"] == "get_weather"


async def test_a_history_with_calls_may_be_sent_without_offering_tools_again(
    sim, member, team, make_key
):
    client = sdk(await key_for(make_key, member, team))
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "What is f?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "f is 4"},
        {"role": "assistant", "content": "f is 4."},
        {"role": "user", "content": "Thanks. And twice f?"},
    ]
    text, calls, reason = await ask(client, messages, False)
    assert text and calls == [] and reason == "stop"
    sent = sim.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[1]["content"] == "Let me look." and "tools" not in sim.requests[-1]


CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
CALLED = {"role": "assistant", "content": None, "tool_calls": [CALL]}
RESULT = {"role": "tool", "tool_call_id": "c1", "content": "Sunny"}
NAMED = {"type": "function", "function": {"name": "other"}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": "get_weather"}, "tools"),
        ({"tools": [WEATHER] * 129}, "tools"),
        ({"tools": [{"type": "function"}]}, "tools[0]"),
        ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0]"),
        (
            {"tools": [{"type": "function", "function": {"name": "get weather"}}]},
            "tools[0].function.name",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "tools[0].function.parameters",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": NAMED}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": 5}, "tool_choice"),
        ({"messages": [ASKED, RESULT]}, "messages[1].tool_call_id"),
        ({"messages": [ASKED, CALLED, ASKED]}, "messages[2]"),
        ({"messages": [ASKED, CALLED]}, "messages"),
        ({"messages": [ASKED, CALLED, RESULT, RESULT]}, "messages[3].tool_call_id"),
        (
            {"messages": [ASKED, {"role": "assistant", "tool_calls": [{"id": "c1"}]}]},
            "messages[1].tool_calls[0]",
        ),
        (
            {"messages": [ASKED, {**CALLED, "tool_calls": [CALL, CALL]}]},
            "messages[1].tool_calls[1]",
        ),
        ({"messages": [CALLED, RESULT]}, "messages"),  # no question at all
        ({"messages": [ASKED, {"role": "assistant", "content": "Sunny."}]}, "messages"),
    ],
)
async def test_bad_tools_and_tool_messages_are_400_and_nothing_goes_upstream(
    sim, member, team, make_key, fields, param
):
    key = await key_for(make_key, member, team)
    async with raw(key) as http:
        response = await http.post("/v1/chat/completions", json={"messages": [ASKED], **fields})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert sim.requests == []
    assert not await db(lambda: TeamUsage.objects.exists())


@pytest.mark.parametrize("stream", ["false", "true"])
@pytest.mark.parametrize(
    ("parameters", "says"),
    [
        ('{"type": "object", "default": NaN}', "NaN or an infinite number"),
        ('{"type": "object", "maximum": Infinity}', "NaN or an infinite number"),
        ('{"type": "object", "maximum": 1e999}', "NaN or an infinite number"),
        ('{"type": "object", "description": "\\ud800"}', "unpaired surrogate"),
        ('{"type": "object", "required": "city"}', "Not a valid JSON Schema at required"),
    ],
    ids=["nan", "infinity", "1e999", "lone-surrogate", "not-a-schema"],
)
async def test_parameters_that_are_not_a_json_schema_are_400_before_anything_counts(
    sim, member, team, make_key, parameters, says, stream
):
    """Python reads NaN, Infinity and lone surrogates that no JSON request upstream can carry."""
    key = await key_for(make_key, member, team)
    tool = f'{{"type": "function", "function": {{"name": "f", "parameters": {parameters}}}}}'
    body = f'{{"model": "{MODEL}", "stream": {stream}, "messages": {json.dumps([ASKED])},'
    body += f' "tools": [{tool}]}}'
    async with raw(key) as http:
        response = await http.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "tools[0].function.parameters" and says in error["message"]
    assert sim.requests == []
    assert not await db(lambda: TeamUsage.objects.exists())


@pytest.mark.parametrize(
    "fields", [{"tools": [WEATHER]}, {"messages": [ASKED, CALLED, RESULT]}], ids=["tools", "calls"]
)
async def test_an_exchange_with_tools_is_not_saved_and_says_so(sim, member, team, make_key, fields):
    key = await key_for(make_key, member, team)
    async with raw(key) as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"messages": [ASKED], **fields},
            headers={"X-Save-Conversation": "1"},
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_parameter"
    assert "without X-Save-Conversation" in error["message"]
    assert sim.requests == [] and not await db(lambda: Conversation.objects.exists())


def test_the_functions_count_toward_the_prompt_an_answer_holds(sim, member, team):
    """The budget holds the prompt an answer may spend: the functions' specs go with it."""
    bare, _, _ = read_request({"model": MODEL, "messages": [ASKED]})
    offered, _, _ = read_request({"model": MODEL, "messages": [ASKED], "tools": [WEATHER]})
    extra = plan_completion(member, team, offered).prompt_tokens
    extra -= plan_completion(member, team, bare).prompt_tokens
    assert extra == count_tokens_estimate(json.dumps([WEATHER])) > 0


def test_earlier_calls_count_toward_the_prompt_an_answer_holds(sim, member, team):
    """A history's calls go back upstream: their arguments are prompt as their results are."""
    arguments = json.dumps({"city": "Paris " * 400})
    called = {
        **CALLED,
        "tool_calls": [{**CALL, "function": {**CALL["function"], "arguments": arguments}}],
    }
    short, _, _ = read_request({"model": MODEL, "messages": [ASKED, CALLED, RESULT]})
    long, _, _ = read_request({"model": MODEL, "messages": [ASKED, called, RESULT]})
    extra = plan_completion(member, team, long).prompt_tokens
    extra -= plan_completion(member, team, short).prompt_tokens
    added = len(arguments) - len(CALL["function"]["arguments"])
    assert abs(extra - added / 4) <= 1 and extra > 500
