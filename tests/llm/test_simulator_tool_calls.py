"""[sim:call=NAME args=...]: the simulator calls a tool the request offers, in both protocols."""

import json

import openai
import pytest
from llama_api_client import LlamaAPIClient

from .conftest import KEY, MODEL

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ASK = [{"role": "user", "content": "Weather? [sim:call=get_weather args=city:Paris,days:2]"}]
ARGS = {"city": "Paris", "days": "2"}


@pytest.fixture
def llama(sim):
    with LlamaAPIClient(api_key=KEY, base_url=sim.native_url, max_retries=0) as client:
        yield client


@pytest.fixture
def compat(sim):
    with openai.OpenAI(api_key=KEY, base_url=sim.openai_url, max_retries=0) as client:
        yield client


def test_llama_sdk_reads_a_streamed_tool_call_and_the_answer_after_it(llama):
    events = [
        chunk.event
        for chunk in llama.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, stream=True
        )
    ]

    pieces = [e.delta for e in events if e.event_type == "progress"]
    assert all(piece.type == "tool_call" for piece in pieces)
    assert len(pieces) > 2  # the arguments arrive over several deltas
    call_id = pieces[0].id
    assert pieces[0].function.name == "get_weather"
    arguments = "".join(piece.function.arguments or "" for piece in pieces)
    assert json.loads(arguments) == ARGS
    assert events[-2].stop_reason == "tool_calls"

    called = {"role": "assistant", "content": "", "stop_reason": "tool_calls"}
    called["tool_calls"] = [
        {"id": call_id, "function": {"name": "get_weather", "arguments": arguments}}
    ]
    result = {"role": "tool", "tool_call_id": call_id, "content": "Sunny, 21 C"}
    answer = llama.chat.completions.create(
        model=MODEL, messages=[*ASK, called, result], tools=TOOLS
    )
    assert answer.completion_message.stop_reason == "stop"
    assert "Sunny, 21 C" in answer.completion_message.content.text


def test_llama_sdk_reads_a_whole_tool_call(llama):
    message = llama.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS)
    message = message.completion_message

    assert message.stop_reason == "tool_calls"
    assert message.tool_calls[0].function.name == "get_weather"
    assert json.loads(message.tool_calls[0].function.arguments) == ARGS


def test_without_tools_offered_the_directive_gives_a_plain_answer(llama):
    message = llama.chat.completions.create(model=MODEL, messages=ASK).completion_message
    assert message.stop_reason == "stop"
    assert not message.tool_calls


def test_openai_sdk_reads_streamed_tool_calls_by_index_and_the_answer_after(compat):
    chunks = list(
        compat.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, stream=True)
    )

    calls = [c for chunk in chunks for c in (chunk.choices[0].delta.tool_calls or [])]
    assert len(calls) > 2 and {call.index for call in calls} == {0}
    assert calls[0].function.name == "get_weather"
    arguments = "".join(call.function.arguments or "" for call in calls)
    assert json.loads(arguments) == ARGS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    called = {"role": "assistant", "content": None}
    called["tool_calls"] = [
        {
            "id": calls[0].id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": arguments},
        }
    ]
    result = {"role": "tool", "tool_call_id": calls[0].id, "content": "Rain"}
    answer = compat.chat.completions.create(
        model=MODEL, messages=[*ASK, called, result], tools=TOOLS
    )
    assert answer.choices[0].finish_reason == "stop"
    assert "Rain" in answer.choices[0].message.content


def test_openai_sdk_reads_a_whole_tool_call(compat):
    choice = compat.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == ARGS


PREFACED = [{"role": "user", "content": "Weather? [sim:call=get_weather preface]"}]


def test_a_preface_comes_before_the_call_in_both_sdks_streamed_and_whole(llama, compat):
    native = llama.chat.completions.create(model=MODEL, messages=PREFACED, tools=TOOLS)
    assert native.completion_message.content.text == "Let me check that. "
    assert native.completion_message.tool_calls[0].function.name == "get_weather"
    events = [
        chunk.event
        for chunk in llama.chat.completions.create(
            model=MODEL, messages=PREFACED, tools=TOOLS, stream=True
        )
    ]
    progress = [e.delta for e in events if e.event_type == "progress"]
    assert progress[0].type == "text" and progress[0].text == "Let me check that. "
    assert {piece.type for piece in progress[1:]} == {"tool_call"}

    whole = compat.chat.completions.create(model=MODEL, messages=PREFACED, tools=TOOLS)
    assert whole.choices[0].message.content == "Let me check that. "
    assert whole.choices[0].message.tool_calls[0].function.name == "get_weather"
    chunks = list(
        compat.chat.completions.create(model=MODEL, messages=PREFACED, tools=TOOLS, stream=True)
    )
    said = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert said == "Let me check that. "
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_tool_call_turn_counts_the_call_it_wrote_and_has_rate_limit_headers(llama, compat):
    """The tokens of a turn that calls are those of the call, not of the text answer the
    question would otherwise have had (which grows with the question)."""
    asks = [
        [{"role": "user", "content": f"{words} [sim:call=get_weather args=city:Paris]"}]
        for words in ("Weather?", "Weather? " + "Tell me all about it. " * 30)
    ]
    native, openai_counts = [], []
    for ask in asks:
        raw = llama.chat.completions.with_raw_response.create(
            model=MODEL, messages=ask, tools=TOOLS
        )
        assert raw.headers["x-ratelimit-remaining-tokens"]
        metrics = {m.metric: m.value for m in raw.parse().metrics}
        assert metrics["num_total_tokens"] == (
            metrics["num_prompt_tokens"] + metrics["num_completion_tokens"]
        )
        streamed = llama.chat.completions.create(
            model=MODEL, messages=ask, tools=TOOLS, stream=True
        )
        (last,) = [c.event for c in streamed if c.event.event_type == "metrics"]
        streamed_metrics = {m.metric: m.value for m in last.metrics}
        assert streamed_metrics["num_completion_tokens"] == metrics["num_completion_tokens"]
        native.append(metrics["num_completion_tokens"])

        raw = compat.chat.completions.with_raw_response.create(
            model=MODEL, messages=ask, tools=TOOLS
        )
        assert raw.headers["x-ratelimit-remaining-tokens"]
        openai_counts.append(raw.parse().usage.completion_tokens)

    assert native[0] == native[1] and 0 < native[0] < 20
    assert openai_counts == native
