import asyncio
import email.utils
import json
import time
from contextlib import aclosing

import httpx
import pytest

from chatapp.llm import (
    MODEL_MAX_OUTPUT,
    ChatParams,
    Finish,
    LlamaClient,
    LlmError,
    LlmValidationError,
    ProviderConfig,
    Retrying,
    StreamError,
    TextDelta,
    count_tokens_estimate,
    shared_http_client,
)
from chatapp.llm.client import BACKOFF_BASE, BACKOFF_JITTER
from chatapp.llm.errors import RETRY_AFTER_CAP, retry_after_from
from chatapp.llm.sse import EventTooLarge, SSEDecoder, sse_events
from llama_simulator.answers import tokenize
from tests.support.polling import await_for
from tests.support.ports import free_port
from tests.support.upstream import Reply, hostile_upstream

from .conftest import KEY, MODEL, user


async def collect(client: LlamaClient, text: str, **params) -> list:
    return [event async for event in client.stream_chat(user(text), ChatParams(MODEL, **params))]


def text_of(events: list) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


async def test_stream_yields_text_then_one_finish_with_usage(make_client, sim):
    events = await collect(make_client(), "What is a websocket?")

    assert isinstance(events[-1], Finish)
    assert all(isinstance(event, TextDelta) for event in events[:-1])
    assert "What is a websocket?" in text_of(events)
    finish = events[-1]
    assert finish.finish_reason == "stop"
    assert finish.usage.prompt_tokens > 0
    assert finish.usage.completion_tokens == len(tokenize(text_of(events)))
    assert finish.request_id.startswith("req-")
    assert finish.rate_limits["x-ratelimit-limit-requests"] == "3000"


async def test_parameters_arrive_under_each_protocols_names(make_client, sim, protocol):
    await collect(make_client(), "hello", temperature=0.7, top_p=0.8, max_tokens=300)

    body = sim.requests[-1]
    assert body["model"] == MODEL
    assert body["temperature"] == 0.7
    assert body["top_p"] == 0.8
    assert body["stream"] is True
    if protocol == "llama":
        assert body["max_completion_tokens"] == 300
        assert "max_tokens" not in body
    else:
        assert body["max_tokens"] == 300
        assert body["stream_options"] == {"include_usage": True}


async def test_max_tokens_ends_with_length(make_client, sim):
    events = await collect(make_client(), "hello", max_tokens=5)

    assert events[-1].finish_reason == "length"
    assert events[-1].usage.completion_tokens == 5


async def test_complete_chat_returns_whole_text_and_finish(make_client, sim):
    text, finish = await make_client().complete_chat(user("Explain SSE"), ChatParams(MODEL))

    assert "Explain SSE" in text
    assert finish.finish_reason == "stop"
    assert finish.usage.completion_tokens > 0
    assert "stream" not in sim.requests[-1]


async def test_openai_protocol_accepts_temperature_above_one(make_client, sim, protocol):
    if protocol == "llama":
        with pytest.raises(LlmValidationError):
            make_client().stream_chat(user("hi"), ChatParams(MODEL, temperature=1.5))
    else:
        events = await collect(make_client(), "hi", temperature=1.5)
        assert isinstance(events[-1], Finish)


@pytest.mark.parametrize(
    "params, field",
    [
        (ChatParams(MODEL, temperature=-0.1), "temperature"),
        (ChatParams(MODEL, temperature=2.5), "temperature"),
        (ChatParams(MODEL, temperature=float("nan")), "temperature"),
        (ChatParams(MODEL, top_p=1.1), "top_p"),
        (ChatParams(MODEL, top_p="0.5"), "top_p"),
        (ChatParams(MODEL, max_tokens=0), "max_tokens"),
        (ChatParams(MODEL, max_tokens=2.5), "max_tokens"),
        (ChatParams(MODEL, max_tokens=True), "max_tokens"),
        (ChatParams(MODEL, max_tokens=MODEL_MAX_OUTPUT[MODEL] + 1), "max_tokens"),
        (ChatParams(""), "model"),
    ],
)
async def test_bad_parameters_raise_and_send_nothing(make_client, sim, params, field):
    client = make_client()

    with pytest.raises(LlmValidationError) as raised:
        client.stream_chat(user("hi"), params)
    with pytest.raises(LlmValidationError):
        await client.complete_chat(user("hi"), params)

    assert raised.value.field == field
    assert sim.requests == []


@pytest.mark.parametrize(
    "messages", [[], [{"role": "robot", "content": "hi"}], [{"role": "user", "content": None}]]
)
async def test_bad_messages_raise_and_send_nothing(make_client, sim, messages):
    with pytest.raises(LlmValidationError) as raised:
        make_client().stream_chat(messages, ChatParams(MODEL))

    assert raised.value.field == "messages"
    assert sim.requests == []


def test_provider_config_rejects_bad_settings_and_hides_the_key():
    with pytest.raises(LlmValidationError):
        ProviderConfig("http://x/v1", KEY, max_attempts=6)
    with pytest.raises(LlmValidationError):
        ProviderConfig("http://x/v1", KEY, protocol="grpc")
    with pytest.raises(LlmValidationError):
        ProviderConfig("x/v1", KEY)

    config = ProviderConfig("http://x/v1/", KEY)
    assert KEY not in repr(config) and KEY not in str(config)
    assert config.base_url == "http://x/v1"


async def test_wrong_key_is_auth_failed_without_retry_or_leak(make_client, sim):
    wrong_key = "wrong-secret-5678"
    events = await collect(make_client(api_key=wrong_key), "hi")

    assert len(events) == 1
    error = events[0]
    assert (error.code, error.status, error.retryable) == ("auth_failed", 401, False)
    assert "LLAMA_API_KEY" in error.message
    assert wrong_key not in error.message and KEY not in error.message
    assert error.request_id.startswith("req-")
    assert len(sim.requests) == 1


@pytest.mark.parametrize(
    "directive, code",
    [
        ("fault=403", "auth_failed"),
        ("fault=400", "bad_request"),
        ("fault=422", "bad_request"),
        ("fault=404", "model_not_found"),
        ("fault=context_too_long", "context_too_long"),
    ],
)
async def test_client_errors_map_to_codes_and_are_not_retried(make_client, sim, directive, code):
    events = await collect(make_client(), f"hi [sim:{directive}]")

    assert [type(event) for event in events] == [StreamError]
    assert events[0].code == code
    assert events[0].retryable is False
    assert len(sim.requests) == 1


async def test_unknown_model_is_model_not_found(make_client, sim, protocol):
    client = make_client()
    events = [e async for e in client.stream_chat(user("hi"), ChatParams("Llama-9-Imaginary"))]

    assert events[0].code == "model_not_found"
    # Only the Llama API speaks the native protocol; an OpenAI-compatible server is named.
    server = "The Llama API" if protocol == "llama" else "The model server at 127.0.0.1"
    assert events[0].message.startswith(f"{server} does not offer the model 'Llama-9-Imaginary'")


@pytest.mark.parametrize(
    "directive",
    [
        "fault=401",
        "fault=429",
        "fault=408",
        "fault=503",
        "fault=400",
        "fault=stall",
        "fault=cut after=0",
        "fault=cut after=2",
        "fault=error_after after=0",
        "fault=error_after after=2",
        "fault=stall_after after=2",
    ],
)
async def test_every_failure_names_the_server_that_failed(make_client, sim, protocol, directive):
    client = make_client(max_attempts=1, first_token_timeout=2, idle_timeout=2)
    events = await collect(client, f"hi [sim:{directive}]")

    assert isinstance(events[-1], StreamError)
    if protocol == "llama":
        assert "the Llama API" in events[-1].message.replace("The Llama", "the Llama")
    else:  # a vLLM, Ollama or llama.cpp server is not Meta's
        assert "the model server at 127.0.0.1" in events[-1].message.replace(
            "The model", "the model"
        )
        assert "Llama API" not in events[-1].message


async def test_the_simulator_serves_the_models_it_is_given_like_a_vllm_server(make_client, sim):
    sim.app.models = ("qwen2.5:32b", "llava:13b")
    client = make_client()
    assert await client.list_models() == ["qwen2.5:32b", "llava:13b"]
    answered = [e async for e in client.stream_chat(user("hi"), ChatParams("qwen2.5:32b"))]
    assert isinstance(answered[-1], Finish)
    refused = [e async for e in client.stream_chat(user("hi"), ChatParams(MODEL))]
    assert refused[0].code == "model_not_found"


async def test_conversation_beyond_the_context_window_is_context_too_long(make_client, sim):
    huge = "word " * 110_000
    events = await collect(make_client(), huge, max_tokens=MODEL_MAX_OUTPUT[MODEL])

    assert events[0].code == "context_too_long"


async def test_429_honours_retry_after_then_succeeds(make_client, sim, sleeps):
    events = await collect(make_client(), "hi [sim:fault=429 retry_after=7 times=1]")

    assert events[0] == Retrying(attempt=2, delay=7.0, code="rate_limited")
    assert sleeps == [7.0]
    assert isinstance(events[-1], Finish)
    assert "hi" in text_of(events)
    assert len(sim.requests) == 2


async def test_retry_after_ms_is_preferred(make_client, sim, sleeps):
    events = await collect(
        make_client(), "hi [sim:fault=429 retry_after=9 retry_after_ms=1500 times=1]"
    )

    assert events[0] == Retrying(attempt=2, delay=1.5, code="rate_limited")
    assert sleeps == [1.5]


async def test_retry_after_up_to_the_cap_is_honoured(make_client, sim, sleeps):
    await collect(make_client(), f"hi [sim:fault=429 retry_after={RETRY_AFTER_CAP:g} times=1]")

    assert sleeps == [RETRY_AFTER_CAP]


async def test_retry_after_beyond_the_cap_falls_back_to_backoff(make_client, sim, sleeps):
    events = await collect(make_client(), "hi [sim:fault=429 retry_after=3600 times=1]")

    assert len(sleeps) == 1
    assert BACKOFF_BASE * (1 - BACKOFF_JITTER) <= sleeps[0] <= BACKOFF_BASE
    assert isinstance(events[-1], Finish)


async def test_retry_after_longer_than_the_time_left_gives_up(make_client, sim, sleeps):
    events = await collect(make_client(total_timeout=5), "hi [sim:fault=429 retry_after=30]")

    assert [event.code for event in events] == ["rate_limited"]
    assert isinstance(events[0], StreamError)
    assert sleeps == []
    assert len(sim.requests) == 1


async def test_rate_limit_that_persists_gives_up_after_max_attempts(make_client, sim, sleeps):
    events = await collect(make_client(max_attempts=3), "hi [sim:fault=429 retry_after=0]")

    assert [type(event) for event in events] == [Retrying, Retrying, StreamError]
    assert [event.attempt for event in events[:2]] == [2, 3]
    assert sleeps == [0.0, 0.0]
    error = events[-1]
    assert (error.code, error.status, error.retryable) == ("rate_limited", 429, True)
    assert error.request_id.startswith("req-")
    assert len(sim.requests) == 3


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503])
async def test_transient_statuses_are_retried(make_client, sim, status):
    events = await collect(make_client(), f"hi [sim:fault={status} retry_after=0 times=1]")

    assert isinstance(events[0], Retrying)
    assert isinstance(events[-1], Finish)


async def test_5xx_without_retry_after_backs_off_exponentially_with_jitter(
    make_client, sim, sleeps
):
    events = await collect(make_client(max_attempts=5), "hi [sim:fault=503]")

    assert [event.delay for event in events[:-1]] == sleeps
    for attempt, delay in enumerate(sleeps, start=1):
        full = BACKOFF_BASE * 2 ** (attempt - 1)  # 0.5, 1, 2, 4 s, less up to 25% jitter
        assert full * (1 - BACKOFF_JITTER) <= delay <= full
    assert len(sleeps) == 4
    assert (events[-1].code, events[-1].status) == ("upstream_unavailable", 503)


async def test_single_attempt_config_never_retries(make_client, sim):
    events = await collect(make_client(max_attempts=1), "hi [sim:fault=500 retry_after=0]")

    assert [event.code for event in events] == ["upstream_unavailable"]
    assert len(sim.requests) == 1


async def test_connection_cut_mid_answer_is_interrupted_not_retried(make_client, sim):
    events = await collect(make_client(), "hi [sim:fault=cut after=5]")

    assert all(isinstance(event, TextDelta) for event in events[:-1])
    assert text_of(events) == "You asked: *hi*\n\nHere is"
    error = events[-1]
    assert (error.code, error.retryable) == ("interrupted", True)
    assert "cut off" in error.message
    assert len(sim.requests) == 1


async def test_connection_cut_before_any_text_is_retried(make_client, sim):
    events = await collect(make_client(), "hi [sim:fault=cut after=0 times=1]")

    assert events[0].code == "upstream_unavailable"
    assert isinstance(events[0], Retrying)
    assert isinstance(events[-1], Finish)


async def test_error_event_mid_answer_is_interrupted(make_client, sim):
    events = await collect(make_client(), "hi [sim:fault=error_after after=3]")

    assert text_of(events) == "You asked: *hi*"
    assert events[-1].code == "interrupted"
    assert "reported an error" in events[-1].message
    assert "Simulated failure mid-answer." in events[-1].message  # the upstream's own words
    assert len(sim.requests) == 1


async def test_error_event_before_any_text_is_retried(make_client, sim):
    events = await collect(make_client(), "hi [sim:fault=error_after times=1]")

    assert events[0].code == "upstream_unavailable"
    assert isinstance(events[-1], Finish)


async def test_stall_before_first_token_is_timeout(make_client, sim):
    client = make_client(first_token_timeout=0.2, max_attempts=1)
    events = await collect(client, "hi [sim:fault=stall]")

    assert [type(event) for event in events] == [StreamError]
    assert (events[0].code, events[0].retryable) == ("timeout", True)


async def test_stall_is_retried_until_attempts_run_out(make_client, sim):
    # The retry must reach its first token within the timeout: generous for a busy machine.
    client = make_client(first_token_timeout=2, max_attempts=2)
    events = await collect(client, "hi [sim:fault=stall times=1]")

    assert events[0] == Retrying(attempt=2, delay=events[0].delay, code="timeout")
    assert isinstance(events[-1], Finish)


async def test_silence_mid_answer_is_interrupted(make_client, sim):
    # Long enough that a busy machine's pause between the first tokens is not mistaken for it.
    client = make_client(idle_timeout=2)
    events = await collect(client, "hi [sim:fault=stall_after after=3]")

    assert text_of(events) == "You asked: *hi*"
    assert events[-1].code == "interrupted"
    assert "sent nothing for 2 s" in events[-1].message
    assert len(sim.requests) == 1


async def test_total_deadline_interrupts_a_slow_answer(make_client, sim):
    # The answer takes 10 s or more at this pace, far past the limit; text comes well before it.
    client = make_client(total_timeout=2)
    events = await collect(client, "hi [sim:long tokens=50] [sim:pace tps=5 ttft=0]")

    assert isinstance(events[0], TextDelta)
    assert events[-1].code == "interrupted"
    assert "2 s limit" in events[-1].message


async def test_unreachable_server_is_upstream_unavailable(http):
    config = ProviderConfig(f"http://127.0.0.1:{free_port()}/v1", KEY, max_attempts=1)
    events = [e async for e in LlamaClient(config, http).stream_chat(user("hi"), ChatParams(MODEL))]

    assert [event.code for event in events] == ["upstream_unavailable"]
    assert "LLAMA_API_BASE_URL" in events[0].message


@pytest.mark.parametrize("protocol", ["llama", "openai"])
async def test_an_unreachable_server_is_named_by_its_kind_and_host(http, protocol):
    config = ProviderConfig(f"http://127.0.0.1:{free_port()}/v1", KEY, protocol, max_attempts=1)
    events = [e async for e in LlamaClient(config, http).stream_chat(user("hi"), ChatParams(MODEL))]

    server = "the Llama API" if protocol == "llama" else "the model server"
    assert events[0].message == (
        f"Could not reach {server} at 127.0.0.1: check LLAMA_API_BASE_URL and the network."
    )


async def test_cancelling_the_consumer_closes_the_upstream_stream(make_client, sim):
    started = asyncio.Event()

    async def consume():
        async for event in make_client().stream_chat(user("[sim:pace tps=5]"), ChatParams(MODEL)):
            if isinstance(event, TextDelta):
                started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    assert sim.active_streams == 1

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close")


async def test_closing_the_stream_early_closes_the_upstream(make_client, sim):
    stream = make_client().stream_chat(user("[sim:pace tps=5]"), ChatParams(MODEL))
    async with aclosing(stream) as events:
        async for event in events:
            assert isinstance(event, TextDelta)
            assert sim.active_streams == 1
            break

    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close")


async def test_complete_chat_raises_llm_error_with_code(make_client, sim):
    with pytest.raises(LlmError) as raised:
        await make_client().complete_chat(user("hi [sim:fault=401]"), ChatParams(MODEL))

    assert raised.value.code == "auth_failed"


async def test_complete_chat_retries_a_reply_cut_short(make_client, sim):
    text, finish = await make_client().complete_chat(
        user("hi [sim:fault=cut times=1]"), ChatParams(MODEL)
    )

    assert "hi" in text and finish.finish_reason == "stop"
    assert len(sim.requests) == 2


async def test_complete_chat_stall_times_out(make_client, sim):
    client = make_client(first_token_timeout=0.2, max_attempts=1)
    with pytest.raises(LlmError) as raised:
        await client.complete_chat(user("hi [sim:fault=stall]"), ChatParams(MODEL))

    assert raised.value.code == "timeout"


async def test_list_models_is_cached(make_client, sim):
    sim.app.api_key = "models-cache-key"
    models = await make_client(api_key="models-cache-key").list_models()
    sim.app.api_key = "a-different-key"  # an uncached call would now fail with 401

    assert await make_client(api_key="models-cache-key").list_models() == models
    assert MODEL in models


async def test_list_models_with_a_wrong_key_raises_auth_failed(make_client, sim):
    with pytest.raises(LlmError) as raised:
        await make_client(api_key="not-the-key").list_models()

    assert raised.value.code == "auth_failed"


async def test_moderate_reports_llama_guard_verdict(make_client, sim):
    client = make_client()

    safe = await client.moderate(user("hello"))
    flagged = await client.moderate(user("[sim:flag categories=S1,S10]"))

    assert safe["results"][0]["flagged"] is False
    assert flagged["results"][0] == {"flagged": True, "flagged_categories": ["S1", "S10"]}


async def test_shared_http_client_is_one_per_event_loop():
    assert shared_http_client() is shared_http_client()
    await shared_http_client().aclose()


def test_count_tokens_estimate_is_about_four_characters_a_token():
    assert count_tokens_estimate("") == 0
    assert count_tokens_estimate("abcd") == 1
    assert count_tokens_estimate("abcde") == 2
    assert count_tokens_estimate("x" * 4000) == 1000


@pytest.mark.parametrize(
    "headers, seconds",
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5", "retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "3600"}, None),  # beyond the cap: fall back to our own backoff
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "1e400"}, None),
        ({"retry-after": "nan", "retry-after-ms": "-5"}, None),
        ({"retry-after": "Fri, 31 Dec 99999999999 23:59:59 GMT"}, None),  # past any clock
        ({}, None),
    ],
)
def test_retry_after_parsing(headers, seconds):
    assert retry_after_from(httpx.Headers(headers)) == seconds


def test_retry_after_accepts_an_http_date():
    in_ten_seconds = email.utils.formatdate(time.time() + 10, usegmt=True)

    assert 5 < retry_after_from(httpx.Headers({"retry-after": in_ten_seconds})) <= 10


async def test_sse_parser_joins_multiline_data_and_keeps_event_names():
    async def lines():
        for line in [": comment", "data: one", "data:two", "", "event: error", "data: {}", ""]:
            yield line

    assert [event async for event in sse_events(lines())] == [
        ("message", "one\ntwo"),
        ("error", "{}"),
    ]


def sse_response(body: str) -> httpx.Response:
    async def stream():
        yield body.encode()

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream())


async def test_chunks_orjson_refuses_are_read_as_pythons_json_reads_them():
    """A NaN, an integer past 64 bits, half a surrogate pair: valid to Python's JSON, refused by
    orjson, which reads the chunks first. The text arrives as before."""
    chunks = [
        '{"choices":[{"index":0,"delta":{"content":"Hi"},"logprob":NaN}]}',
        '{"created":18446744073709551616,"choices":[{"index":0,"delta":{"content":" there"}}]}',
        '{"choices":[{"index":0,"delta":{"content":"\\ud83d"},"finish_reason":"stop"}]}',
    ]
    body = "".join(f"data: {chunk}\n\n" for chunk in chunks) + "data: [DONE]\n\n"

    def upstream(request: httpx.Request) -> httpx.Response:
        return sse_response(body)

    config = ProviderConfig("http://upstream.test/v1", KEY, protocol="openai")
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        events = await collect(LlamaClient(config, http=http), "hi")

    assert text_of(events) == "Hi there\ud83d"
    assert isinstance(events[-1], Finish)
    assert events[-1].finish_reason == "stop"


@pytest.mark.parametrize("chunk", ["{not json", "[" * 100_000 + "]" * 100_000])
async def test_a_chunk_that_is_not_json_is_upstream_unavailable(chunk):
    body = f"data: {chunk}\n\n"

    def upstream(request: httpx.Request) -> httpx.Response:
        return sse_response(body)

    config = ProviderConfig("http://upstream.test/v1", KEY, protocol="openai", max_attempts=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        events = await collect(LlamaClient(config, http=http), "hi")

    assert [(type(event), event.code) for event in events] == [
        (StreamError, "upstream_unavailable")
    ]


async def test_an_error_body_nested_past_the_json_parser_is_still_an_error():
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, content=b"[" * 100_000 + b"]" * 100_000)

    config = ProviderConfig("http://upstream.test/v1", KEY, protocol="openai", max_attempts=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        events = await collect(LlamaClient(config, http=http), "hi")

    assert [(type(event), event.code) for event in events] == [(StreamError, "bad_request")]


@pytest.mark.parametrize(
    ("protocol", "chunk"),
    [
        ("openai", '{"choices":5}'),
        ("openai", '{"choices":["x"]}'),
        ("openai", '{"choices":[{"index":0,"delta":{"content":5},"finish_reason":"stop"}]}'),
        ("openai", '{"choices":[{"index":0,"delta":{},"finish_reason":["stop"]}]}'),
        ("openai", '{"choices":[],"usage":[1]}'),
        ("llama", '{"event":"complete"}'),
        ("llama", '{"event":{"delta":{"type":"text","text":5}}}'),
        ("llama", '{"event":{"event_type":"complete","metrics":{"num_prompt_tokens":1}}}'),
    ],
)
async def test_a_chunk_of_another_shape_is_upstream_unavailable(protocol, chunk):
    def upstream(request: httpx.Request) -> httpx.Response:
        return sse_response(f"data: {chunk}\n\n")

    config = ProviderConfig("http://upstream.test/v1", KEY, protocol=protocol, max_attempts=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        events = await collect(LlamaClient(config, http=http), "hi")

    assert [(type(event), event.code) for event in events] == [
        (StreamError, "upstream_unavailable")
    ]
    assert "cannot read" in events[0].message


@pytest.mark.parametrize("protocol", ["llama", "openai"])
async def test_a_whole_reply_of_another_shape_raises_upstream_unavailable(protocol):
    body = {"completion_message": "hi"} if protocol == "llama" else {"choices": {"0": "hi"}}

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    config = ProviderConfig("http://upstream.test/v1", KEY, protocol=protocol, max_attempts=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        with pytest.raises(LlmError) as raised:
            await LlamaClient(config, http=http).complete_chat(user("hi"), ChatParams(MODEL))

    assert raised.value.code == "upstream_unavailable"


async def test_ids_that_are_not_text_are_ignored():
    chunk = '{"id":{"a":1},"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}'

    def upstream(request: httpx.Request) -> httpx.Response:
        return sse_response(f"data: {chunk}\n\n")

    config = ProviderConfig("http://upstream.test/v1", KEY, protocol="openai")
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        events = await collect(LlamaClient(config, http=http), "hi")

    assert text_of(events) == "Hi"
    assert events[-1].request_id is None


@pytest.mark.parametrize("after_text", [False, True])
async def test_a_line_that_never_ends_is_refused_before_it_fills_the_memory(after_text):
    """10 MB without a line end (or data lines without the blank line that ends the event)."""
    sent: list[int] = []
    first = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n' if after_text else b""

    async def endless():
        yield first + b"data: "
        for _ in range(160):
            sent.append(1)
            yield b"a" * 65_536

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=endless())

    config = ProviderConfig("http://upstream.test/v1", KEY, protocol="openai", max_attempts=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        events = await collect(LlamaClient(config, http=http), "hi")

    assert isinstance(events[-1], StreamError)
    assert events[-1].code == ("interrupted" if after_text else "upstream_unavailable")
    assert "more than 1 MiB without an event" in events[-1].message
    assert len(sent) < 20  # about 1 MiB of the 10 read


def test_data_lines_without_the_end_of_their_event_are_refused():
    decoder = SSEDecoder()
    with pytest.raises(EventTooLarge):
        for _ in range(20):
            decoder.feed(b"data: " + b"a" * 65_536 + b"\n")


def endless_body(sent: list[int], start: bytes):
    """A body that goes on for 20 MB, counting the 64 KiB pieces taken from it."""

    async def pieces():
        yield start
        for _ in range(320):
            sent.append(1)
            yield b" " * 65_536

    return pieces()


async def test_a_whole_reply_past_the_limit_is_refused_unread():
    sent: list[int] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless_body(sent, b'{"choices":['))

    config = ProviderConfig("http://upstream.test/v1", KEY, protocol="openai", max_attempts=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        with pytest.raises(LlmError) as raised:
            await LlamaClient(config, http=http).complete_chat(user("hi"), ChatParams(MODEL))

    assert raised.value.code == "upstream_unavailable"
    assert "longer than 8 MiB" in raised.value.message
    assert len(sent) < 140  # about 8 MiB of the 20


async def test_an_endless_error_body_is_read_only_as_far_as_its_details():
    sent: list[int] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, content=endless_body(sent, b"bad request"))

    config = ProviderConfig("http://upstream.test/v1", KEY, protocol="openai", max_attempts=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        events = await collect(LlamaClient(config, http=http), "hi")

    assert [(type(event), event.code) for event in events] == [(StreamError, "bad_request")]
    assert "bad request" in events[0].message
    assert len(sent) < 5


@pytest.mark.parametrize("protocol", ["llama", "openai"])
async def test_a_tool_call_growing_past_1_mib_is_refused(protocol):
    piece = "a" * 65_536
    if protocol == "openai":
        calls = [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": piece}}]
        chunk = json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]})
        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    else:
        delta = {"type": "tool_call", "function": {"name": "f", "arguments": piece}}
        chunk = json.dumps({"event": {"event_type": "progress", "delta": delta}})
        end = {"event": {"event_type": "complete", "stop_reason": "tool_calls"}}
    body = f"data: {chunk}\n\n" * 20 + f"data: {json.dumps(end)}\n\n"

    def upstream(request: httpx.Request) -> httpx.Response:
        return sse_response(body)

    config = ProviderConfig("http://upstream.test/v1", KEY, protocol=protocol, max_attempts=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        events = await collect(LlamaClient(config, http=http), "hi")

    assert [(type(event), event.code) for event in events] == [
        (StreamError, "upstream_unavailable")
    ]
    assert "longer than 1 MiB" in events[0].message


async def test_a_streamed_answer_past_8_million_characters_is_cut_and_keeps_its_text():
    """A provider streaming text without end: the answer stops at the limit, what came is kept."""
    sent: list[int] = []
    piece = json.dumps({"choices": [{"index": 0, "delta": {"content": "a" * 65_536}}]})

    async def endless():
        for _ in range(320):  # 20 million characters
            sent.append(1)
            yield f"data: {piece}\n\n".encode()

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=endless())

    config = ProviderConfig("http://upstream.test/v1", KEY, protocol="openai", max_attempts=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        events = await collect(LlamaClient(config, http=http), "hi")

    assert isinstance(events[-1], StreamError)
    assert events[-1].code == "interrupted"
    assert "passed 8,000,000 characters" in events[-1].message
    assert len(text_of(events)) == 122 * 65_536  # every piece that fit, whole
    assert len(sent) < 130


# What an overloaded gateway in front of a model server answers with a 200.
OVERLOADED = json.dumps({"error": {"message": "The model is overloaded", "type": "server_error"}})


@pytest.mark.parametrize("protocol", ["llama", "openai"])
async def test_a_whole_reply_that_is_an_error_object_raises_its_detail_after_a_retry(
    protocol, sleeps
):
    async def record_sleep(delay: float) -> None:
        sleeps.append(delay)

    replies = [Reply(OVERLOADED, headers={"Content-Type": "application/json"})]
    async with hostile_upstream(replies) as url:
        client = LlamaClient(ProviderConfig(url, KEY, protocol=protocol), sleep=record_sleep)
        with pytest.raises(LlmError) as raised:
            await client.complete_chat(user("hi"), ChatParams(MODEL))

    assert raised.value.code == "upstream_unavailable"
    assert "The model is overloaded" in raised.value.message
    assert len(sleeps) == 2  # retried like any upstream failure, then given up


@pytest.mark.parametrize("protocol", ["llama", "openai"])
async def test_a_stream_answered_by_a_json_error_object_reports_its_detail(protocol):
    replies = [Reply(OVERLOADED, headers={"Content-Type": "application/json"})]
    async with hostile_upstream(replies) as url:
        config = ProviderConfig(url, KEY, protocol=protocol, max_attempts=1)
        events = await collect(LlamaClient(config), "hi")

    assert [(type(event), event.code) for event in events] == [
        (StreamError, "upstream_unavailable")
    ]
    assert "The model is overloaded" in events[0].message


WHOLE_ANSWER = json.dumps(
    {
        "choices": [{"message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
)


async def test_a_server_without_a_key_gets_no_authorization_header():
    """A keyless vLLM or Ollama: an empty "Bearer " is no key, and some servers refuse it."""
    seen: list[dict] = []
    replies = [Reply(WHOLE_ANSWER, headers={"Content-Type": "application/json"})]
    async with hostile_upstream(replies, seen) as url:
        text, _ = await LlamaClient(ProviderConfig(url, "", protocol="openai")).complete_chat(
            user("hi"), ChatParams(MODEL)
        )
        await LlamaClient(ProviderConfig(url, KEY, protocol="openai")).complete_chat(
            user("hi"), ChatParams(MODEL)
        )
    assert text == "Hi"
    assert "Authorization" not in seen[0]
    assert seen[1]["Authorization"] == f"Bearer {KEY}"


def openai_chunk(finish_reason: str | None = None, **delta) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return "data: " + json.dumps({"id": "c1", "choices": [choice]}) + "\n\n"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_a_model_thinking_past_the_first_token_timeout_still_answers(field):
    """vLLM, llama.cpp and Ollama stream a reasoning model's thoughts before its answer: the
    server is answering, so its silence is what times out, not the first text's absence."""
    thoughts = "".join(openai_chunk(**{"content": None, field: "Hmm. "}) for _ in range(10))
    body = thoughts + openai_chunk("stop", content="Hi") + "data: [DONE]\n\n"
    # Two seconds of thinking against a one-second first-token timeout.
    async with hostile_upstream([Reply(body, pause=0.2)]) as url:
        config = ProviderConfig(
            url, KEY, protocol="openai", first_token_timeout=1, idle_timeout=10, max_attempts=1
        )
        events = await collect(LlamaClient(config), "hi")

    assert text_of(events) == "Hi"
    assert isinstance(events[-1], Finish)


async def test_chunks_that_carry_a_null_error_field_are_an_answer():
    """A gateway that writes every field of its chunk type sends `"error": null` with each: no
    error, as the openai SDK reads it."""
    choices = [{"delta": {"content": "Hi"}}, {"delta": {}, "finish_reason": "stop"}]
    chunks = [{"id": "c1", "error": None, "choices": [{"index": 0, **c}]} for c in choices]
    body = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
    async with hostile_upstream([Reply(body)]) as url:
        config = ProviderConfig(url, KEY, protocol="openai", max_attempts=1)
        events = await collect(LlamaClient(config), "hi")

    assert text_of(events) == "Hi"
    assert isinstance(events[-1], Finish)


async def test_a_stream_that_says_done_without_a_finish_reason_is_a_whole_answer():
    """Some OpenAI-compatible proxies leave finish_reason null to the very end of the stream:
    `[DONE]` still says the answer is whole, so it is not shown as cut off."""
    body = openai_chunk(content="Hi") + openai_chunk(content=" there") + "data: [DONE]\n\n"
    async with hostile_upstream([Reply(body)]) as url:
        config = ProviderConfig(url, KEY, protocol="openai", max_attempts=1)
        events = await collect(LlamaClient(config), "hi")

    assert text_of(events) == "Hi there"
    assert isinstance(events[-1], Finish)
    assert events[-1].finish_reason is None  # the server did not say why it ended


NGINX_405 = (
    "<html>\r\n<head><title>405 Not Allowed</title></head>\r\n<body>\r\n"
    "<center><h1>405 Not Allowed</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize(
    ("page", "shown"),
    [
        (NGINX_405, "405 Not Allowed"),
        (
            "<!DOCTYPE html><html><body><h1>Method &amp; path refused</h1></body></html>",
            "Method & path refused",
        ),
    ],
)
async def test_an_html_error_page_from_a_proxy_is_shown_as_its_words_not_its_markup(page, shown):
    replies = [Reply(page, status=405, headers={"Content-Type": "text/html"})]
    async with hostile_upstream(replies) as url:
        config = ProviderConfig(url, KEY, protocol="openai", max_attempts=1)
        events = await collect(LlamaClient(config), "hi")

    assert [(type(event), event.code) for event in events] == [(StreamError, "bad_request")]
    assert events[0].message.endswith(f"refused the request (HTTP 405): {shown}")


async def test_fastapi_validation_errors_are_quoted_as_where_and_what():
    """llama-cpp-python's server and LiteLLM's proxy (FastAPI) refuse a request with a list of
    problems, each with the request's own values: the fields and what is wrong with them."""
    problems = [
        {
            "type": "missing",
            "loc": ["body", "messages", 0, "content"],
            "msg": "Field required",
            "input": {"role": "user", "conten": "hi"},
        },
        {"type": "float_type", "loc": ["body", "temperature"], "msg": "Input should be a number"},
    ]
    replies = [Reply(json.dumps({"detail": problems}), status=422)]
    async with hostile_upstream(replies) as url:
        config = ProviderConfig(url, KEY, protocol="openai", max_attempts=1)
        events = await collect(LlamaClient(config), "hi")

    assert [(type(event), event.code) for event in events] == [(StreamError, "bad_request")]
    assert events[0].message.endswith(
        "(HTTP 422): body.messages.0.content: Field required;"
        " body.temperature: Input should be a number"
    )


async def test_a_stream_labelled_as_json_is_read_as_the_stream_it_is():
    """Some local servers label their event stream `application/json`: the openai SDK reads
    the events whatever the label, and so does the app."""
    body = openai_chunk(content="Hi") + openai_chunk("stop", content=" there") + "data: [DONE]\n\n"
    replies = [Reply(body, headers={"Content-Type": "application/json"}, pause=0)]
    async with hostile_upstream(replies) as url:
        config = ProviderConfig(url, KEY, protocol="openai", max_attempts=1)
        events = await collect(LlamaClient(config), "hi")

    assert text_of(events) == "Hi there"
    assert isinstance(events[-1], Finish)
