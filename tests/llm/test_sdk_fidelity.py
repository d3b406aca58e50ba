"""The simulator speaks the real wire formats: Meta's and OpenAI's own SDKs can read it."""

import httpx
import llama_api_client
import openai
import pytest
from llama_api_client import AsyncLlamaAPIClient, LlamaAPIClient

from .conftest import KEY, MODEL, user


@pytest.fixture
def llama(sim):
    with LlamaAPIClient(api_key=KEY, base_url=sim.native_url, max_retries=0) as client:
        yield client


@pytest.fixture
def compat(sim):
    with openai.OpenAI(api_key=KEY, base_url=sim.openai_url, max_retries=0) as client:
        yield client


def test_llama_sdk_reads_a_whole_reply(llama, sim):
    response = llama.chat.completions.create(
        model=MODEL, messages=user("What is Llama?"), max_completion_tokens=400, temperature=0.3
    )

    message = response.completion_message
    assert message.role == "assistant"
    assert "What is Llama?" in message.content.text
    assert message.stop_reason == "stop"
    metrics = {metric.metric: metric.value for metric in response.metrics}
    assert metrics["num_completion_tokens"] > 0
    assert sim.requests[-1]["max_completion_tokens"] == 400
    assert sim.requests[-1]["temperature"] == 0.3


def test_llama_sdk_reads_a_stream(llama):
    chunks = list(
        llama.chat.completions.create(model=MODEL, messages=user("Stream it"), stream=True)
    )

    events = [chunk.event for chunk in chunks]
    assert events[0].event_type == "start"
    assert [event.event_type for event in events[-2:]] == ["complete", "metrics"]
    assert events[-2].stop_reason == "stop"
    assert {metric.metric for metric in events[-1].metrics} >= {"num_prompt_tokens"}
    text = "".join(event.delta.text for event in events)
    assert "Stream it" in text and "```python" in text


async def test_async_llama_sdk_reads_a_stream_that_hits_max_tokens(sim):
    async with AsyncLlamaAPIClient(api_key=KEY, base_url=sim.native_url) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=user("hi"), stream=True, max_completion_tokens=4
        )
        events = [chunk.event async for chunk in stream]

    assert events[-2].stop_reason == "length"
    assert "".join(event.delta.text for event in events) == "You asked: *hi*\n\nHere"


def test_llama_sdk_lists_models_and_moderates(llama):
    models = [model.id for model in llama.models.list()]
    verdict = llama.moderations.create(messages=user("[sim:flag]"))

    assert MODEL in models
    assert verdict.results[0].flagged is True
    assert verdict.results[0].flagged_categories == ["S1"]


def test_llama_sdk_raises_its_own_errors(sim):
    with LlamaAPIClient(api_key="wrong", base_url=sim.native_url, max_retries=0) as client:
        with pytest.raises(llama_api_client.AuthenticationError):
            client.models.list()
    with LlamaAPIClient(api_key=KEY, base_url=sim.native_url, max_retries=0) as client:
        with pytest.raises(llama_api_client.RateLimitError):
            client.chat.completions.create(model=MODEL, messages=user("[sim:fault=429]"))
        with pytest.raises(llama_api_client.NotFoundError):
            client.chat.completions.create(model="Llama-0", messages=user("hi"))


def test_llama_sdk_retries_honour_retry_after(sim):
    with LlamaAPIClient(api_key=KEY, base_url=sim.native_url, max_retries=2) as client:
        response = client.chat.completions.create(
            model=MODEL, messages=user("hi [sim:fault=503 retry_after=0.01 times=2]")
        )

    assert response.completion_message.stop_reason == "stop"
    assert len(sim.requests) == 3


def test_openai_sdk_reads_a_whole_reply(compat, sim):
    response = compat.chat.completions.create(
        model=MODEL, messages=user("Compat?"), max_tokens=300, temperature=1.2, top_p=0.5
    )

    choice = response.choices[0]
    assert "Compat?" in choice.message.content
    assert choice.finish_reason == "stop"
    assert (
        response.usage.total_tokens
        == response.usage.prompt_tokens + response.usage.completion_tokens
    )
    assert sim.requests[-1]["max_tokens"] == 300
    assert sim.requests[-1]["top_p"] == 0.5


def test_openai_sdk_reads_a_stream_with_usage(compat):
    stream = compat.chat.completions.create(
        model=MODEL, messages=user("Stream?"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert "Stream?" in text
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage.completion_tokens > 0


def test_openai_sdk_lists_models_and_raises_its_own_errors(compat, sim):
    assert MODEL in [model.id for model in compat.models.list()]
    with pytest.raises(openai.RateLimitError):
        compat.chat.completions.create(model=MODEL, messages=user("[sim:fault=429]"))
    with pytest.raises(openai.NotFoundError):
        compat.chat.completions.create(model="Llama-0", messages=user("hi"))
    with openai.OpenAI(api_key="bad-key", base_url=sim.openai_url, max_retries=0) as anonymous:
        with pytest.raises(openai.AuthenticationError):
            anonymous.models.list()


def test_openai_sdk_stream_cut_raises(compat):
    stream = compat.chat.completions.create(
        model=MODEL, messages=user("[sim:fault=cut after=3]"), stream=True
    )

    with pytest.raises(openai.APIConnectionError):
        list(stream)


def test_sdks_raise_on_an_error_event_mid_stream(llama, compat):
    messages = user("[sim:fault=error_after after=2]")

    with pytest.raises(llama_api_client.APIError):
        list(llama.chat.completions.create(model=MODEL, messages=messages, stream=True))
    with pytest.raises(openai.APIError):
        list(compat.chat.completions.create(model=MODEL, messages=messages, stream=True))


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": 5}],
        [{"role": "user", "content": [{"type": "text", "text": 5}]}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": 5}],
    ],
)
def test_malformed_messages_are_a_bad_request_the_sdks_raise_as_such(llama, compat, messages):
    """As the real API: a 400 in its error shape, never a 500 (which the SDKs would retry)."""
    with pytest.raises(llama_api_client.BadRequestError) as refused:
        llama.chat.completions.create(model=MODEL, messages=messages)
    assert refused.value.body["status"] == 400
    with pytest.raises(llama_api_client.BadRequestError):
        llama.moderations.create(messages=messages)
    with pytest.raises(llama_api_client.BadRequestError):
        llama.chat.completions.create(model="Llama-Guard-4-12B", messages=messages)
    with pytest.raises(openai.BadRequestError) as refused:
        compat.chat.completions.create(model=MODEL, messages=messages)
    assert refused.value.body["type"] == "invalid_request_error"


def test_malformed_bodies_are_a_bad_request(sim, compat):
    with pytest.raises(openai.BadRequestError):
        compat.chat.completions.create(
            model=MODEL, messages=user("hi"), stream=True, stream_options=5
        )
    deep = httpx.post(
        f"{sim.native_url}/chat/completions",
        content=b"[" * 100_000,
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert deep.status_code == 400
    assert deep.json()["status"] == 400


def test_openai_sdk_max_completion_tokens_caps_the_answer_as_max_tokens_does(compat, sim):
    """OpenAI's current name for the cap (max_tokens is deprecated in the openai SDK)."""
    capped = compat.chat.completions.create(
        model=MODEL, messages=user("hi"), max_completion_tokens=4
    )
    streamed = compat.chat.completions.create(
        model=MODEL,
        messages=user("hi"),
        max_completion_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(streamed)

    assert capped.choices[0].finish_reason == "length"
    assert capped.usage.completion_tokens == 4
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 4
    with pytest.raises(openai.BadRequestError):
        compat.chat.completions.create(model=MODEL, messages=user("hi"), max_completion_tokens=0)


@pytest.mark.parametrize(
    "request_body",
    [
        {"messages": [{"role": "wizard", "content": "hi"}]},
        {"messages": [*user("hi"), {"role": "tool", "content": "Sunny"}]},
        {"messages": user("hi"), "tool_choice": "always"},
        {"messages": user("hi"), "tool_choice": {"type": "function", "function": {}}},
    ],
    ids=["unknown role", "tool result without its call", "tool_choice", "tool_choice name"],
)
def test_requests_outside_the_sdks_types_are_a_bad_request(llama, compat, request_body):
    """What llama-api-client's and openai's request types rule out is refused as the real API
    refuses it, so a test against the simulator catches the app sending it."""
    with pytest.raises(llama_api_client.BadRequestError):
        llama.chat.completions.create(model=MODEL, **request_body)
    with pytest.raises(openai.BadRequestError):
        compat.chat.completions.create(model=MODEL, **request_body)
