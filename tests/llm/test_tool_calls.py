"""Tool calls through the client: `tools` go upstream, streamed calls come back whole."""

import json

import pytest
from llama_api_client.types import CreateChatCompletionResponseStreamChunk

from chatapp.llm import (
    ChatParams,
    Finish,
    LlamaClient,
    ProviderConfig,
    TextDelta,
    ToolCall,
    ToolCalls,
)
from chatapp.llm.protocols import PROTOCOL_ADAPTERS, ReplyState
from tests.support.upstream import Reply, hostile_upstream

from .conftest import KEY, MODEL, user

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} tool",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    for name in ("get_weather", "get_time")
]


async def events_of(client, messages, tools=TOOLS):
    return [event async for event in client.stream_chat(messages, ChatParams(MODEL), tools)]


async def test_a_streamed_call_arrives_whole_before_the_finish(make_client, sim):
    events = await events_of(
        make_client(), user("Weather? [sim:call=get_weather args=city:Paris,days:2]")
    )

    *_, calls, finish = events
    assert isinstance(calls, ToolCalls) and isinstance(finish, Finish)
    assert finish.finish_reason == "tool_calls"
    (call,) = calls.calls
    assert call.name == "get_weather" and call.id
    assert json.loads(call.arguments) == {"city": "Paris", "days": "2"}
    assert not any(isinstance(event, TextDelta) and event.text for event in events)
    assert sim.requests[-1]["tools"] == TOOLS


async def test_parallel_calls_of_one_turn_keep_their_order_and_ids(make_client):
    events = await events_of(
        make_client(), user("Both [sim:call=get_weather+get_time args=city:Oslo]")
    )

    calls = next(event for event in events if isinstance(event, ToolCalls)).calls
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert len({call.id for call in calls}) == 2
    assert all(json.loads(call.arguments) == {"city": "Oslo"} for call in calls)


async def test_tool_results_sent_back_get_a_text_answer(make_client, sim, protocol):
    client = make_client()
    question = user("Weather? [sim:call=get_weather args=city:Paris]")
    calls = next(e for e in await events_of(client, question) if isinstance(e, ToolCalls)).calls
    called = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ],
    }
    result = {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 21 C"}

    events = await events_of(client, [*question, called, result])

    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "Sunny, 21 C" in text
    assert events[-1].finish_reason == "stop"
    sent = sim.requests[-1]["messages"][1]
    if protocol == "llama":  # the native API names the calls without a type
        assert sent["tool_calls"] == [
            {
                "id": calls[0].id,
                "function": {"name": "get_weather", "arguments": calls[0].arguments},
            }
        ]
    else:
        assert sent["tool_calls"][0]["type"] == "function"


async def test_without_tools_nothing_is_offered(make_client, sim):
    events = await events_of(make_client(), user("Hi [sim:call=get_weather]"), tools=None)
    assert "tools" not in sim.requests[-1]
    assert not any(isinstance(event, ToolCalls) for event in events)


async def test_a_whole_reply_carries_its_calls(make_client):
    client = make_client()
    text, finish = await client.complete_chat(
        user("[sim:call=get_weather args=city:Rome]"), ChatParams(MODEL)
    )
    assert finish.finish_reason == "stop" and text  # no tools offered: a plain answer


def test_native_pieces_split_arguments_and_start_a_new_call_at_each_id():
    native = PROTOCOL_ADAPTERS["llama"]
    state = ReplyState()
    pieces = [
        {"type": "tool_call", "id": "a", "function": {"name": "get_weather"}},
        {"type": "tool_call", "function": {"arguments": '{"ci'}},
        {"type": "tool_call", "function": {"arguments": 'ty": "Paris"}'}},
        {"type": "tool_call", "id": "b", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    for piece in pieces:
        chunk = {"id": "r1", "event": {"event_type": "progress", "delta": piece}}
        assert native.read_chunk(chunk, state) == ""
    assert state.tool_calls() == (
        ToolCall("a", "get_weather", '{"city": "Paris"}'),
        ToolCall("b", "get_time", "{}"),
    )


def test_openai_pieces_are_gathered_by_index_even_when_interleaved():
    compat = PROTOCOL_ADAPTERS["openai"]
    state = ReplyState()
    pieces = [
        [{"index": 0, "id": "a", "type": "function", "function": {"name": "get_weather"}}],
        [{"index": 1, "id": "b", "type": "function", "function": {"name": "get_time"}}],
        [{"index": 0, "function": {"arguments": '{"city":'}}],
        [{"index": 1, "function": {"arguments": "{}"}}],
        [{"index": 0, "function": {"arguments": '"Oslo"}'}}],
    ]
    for piece in pieces:
        chunk = {"choices": [{"index": 0, "delta": {"tool_calls": piece}}]}
        assert compat.read_chunk(chunk, state) == ""
    assert state.tool_calls() == (
        ToolCall("a", "get_weather", '{"city":"Oslo"}'),
        ToolCall("b", "get_time", "{}"),
    )


@pytest.mark.parametrize("protocol", ["llama", "openai"])
def test_whole_replies_name_their_calls(protocol):
    adapter = PROTOCOL_ADAPTERS[protocol]
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}
    if protocol == "llama":
        body = {"completion_message": {"content": {"text": ""}, "tool_calls": [call]}}
    else:
        body = {"choices": [{"message": {"content": None, "tool_calls": [call]}}]}
    _, state = adapter.read_reply(body)
    assert state.tool_calls() == (ToolCall("c1", "f", '{"x":1}'),)


def test_openai_pieces_without_index_are_told_apart_by_their_ids():
    # Some compatible servers leave out `index` (the OpenAI spec requires it): a piece with a
    # new id starts the next call; one with no id, or the same id again, continues the last.
    compat = PROTOCOL_ADAPTERS["openai"]
    state = ReplyState()
    pieces = [
        [
            {"id": "a", "type": "function", "function": {"name": "get_weather"}},
            {"id": "a", "function": {"arguments": '{"city":'}},
        ],
        [{"function": {"arguments": '"Oslo"}'}}],
        [
            {"id": "b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            {"id": "c", "type": "function", "function": {"name": "get_weather"}},
        ],
    ]
    for piece in pieces:
        chunk = {"choices": [{"index": 0, "delta": {"tool_calls": piece}}]}
        assert compat.read_chunk(chunk, state) == ""
    assert state.tool_calls() == (
        ToolCall("a", "get_weather", '{"city":"Oslo"}'),
        ToolCall("b", "get_time", "{}"),
        ToolCall("c", "get_weather", "{}"),
    )


def native_event(event: dict) -> str:
    chunk = {"id": "r1", "event": event}
    CreateChatCompletionResponseStreamChunk.model_validate(chunk)  # as llama-api-client types it
    return f"data: {json.dumps(chunk)}\n\n"


def native_piece(call_id: str, **function) -> str:
    delta = {"type": "tool_call", "id": call_id, "function": function}
    return native_event({"event_type": "progress", "delta": delta})


async def test_native_pieces_that_each_repeat_their_calls_id_make_one_call_each():
    """The Llama API's stream types an `id` on every tool_call delta: a piece that repeats the
    id of the call before it continues that call, as a new id starts the next."""
    stream = "".join(
        [
            native_event({"event_type": "start", "delta": {"type": "text", "text": ""}}),
            native_piece("a", name="get_weather", arguments=""),
            native_piece("a", arguments='{"city": '),
            native_piece("a", arguments='"Paris"}'),
            native_piece("b", name="get_time", arguments="{}"),
            native_piece("b", arguments=""),
            native_event(
                {
                    "event_type": "complete",
                    "delta": {"type": "text", "text": ""},
                    "stop_reason": "tool_calls",
                }
            ),
        ]
    )
    async with hostile_upstream([Reply(stream)]) as url:
        client = LlamaClient(ProviderConfig(url, KEY, protocol="llama"))
        events = await events_of(client, user("Weather and time?"))

    *_, calls, finish = events
    assert calls == ToolCalls(
        (ToolCall("a", "get_weather", '{"city": "Paris"}'), ToolCall("b", "get_time", "{}"))
    )
    assert finish.finish_reason == "tool_calls"
