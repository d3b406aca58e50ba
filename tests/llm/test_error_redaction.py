"""Upstream error text is redacted whole, then cut: no piece of a key survives any cut point."""

import json

import httpx
import pytest

from chatapp.llm import ProviderConfig
from chatapp.llm.errors import (
    DETAIL_LIMIT,
    error_from_body,
    error_from_exception,
    error_from_response,
    redact,
)

CONFIGURED_KEY = "site-key-0042"
# Keys of other parties (a team's, another provider's), in the shapes they come in.
FOREIGN_KEYS = [
    "sk-TEAM-9f8e7d6c5b4a39281706aa77",
    "LLM|1029384756|Zx8Yw7Vu6Ts5Rq4Po3Nm2Lk1",
    "gsk_4b3a29f8e7d6c5b4a3928170",
    "9f8e7d6c5b4a39281706aa77ffee0011",
]
CONFIG = ProviderConfig("https://llm.example.com/v1", CONFIGURED_KEY)


def leaks(text: str, key: str, size: int = 4) -> list[str]:
    return [key[i : i + size] for i in range(len(key) - size + 1) if key[i : i + size] in text]


def details(body: bytes) -> list[str]:
    """The user-facing text of a 400 carrying this body, and of a stream error chunk."""
    response = httpx.Response(400, content=body)
    shown = [error_from_response(response, body, CONFIG, "m").message]
    try:
        chunk = json.loads(body)
    except ValueError:
        return shown
    return [*shown, error_from_body(chunk, CONFIG).message]


@pytest.mark.parametrize(
    ("base_url", "protocol", "server"),
    [
        ("https://api.llama.com/v1", "llama", "The Llama API"),
        ("https://api.llama.com/compat/v1", "openai", "The Llama API"),
        ("http://ollama.internal:11434/v1", "openai", "The model server at ollama.internal"),
    ],
)
def test_a_missing_model_names_the_server_that_lacks_it(base_url, protocol, server):
    config = ProviderConfig(base_url, CONFIGURED_KEY, protocol)
    body = b'{"error": {"message": "model \'qwen2.5:32b\' not found"}}'
    error = error_from_response(httpx.Response(404, content=body), body, config, "qwen2.5:32b")
    assert error.code == "model_not_found"
    assert error.message == f"{server} does not offer the model 'qwen2.5:32b': pick another model."


@pytest.mark.parametrize("status", [401, 403, 404, 408, 409, 422, 429, 500, 503])
def test_an_own_servers_error_names_that_server_not_the_llama_api(status):
    config = ProviderConfig("http://vllm.internal:8000/v1", CONFIGURED_KEY, "openai")
    body = b'{"error": {"message": "no"}}'
    error = error_from_response(httpx.Response(status, content=body), body, config, "qwen")
    assert error.message.startswith("The model server at vllm.internal ")
    assert "Llama API" not in error.message


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectTimeout("slow"),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("dropped"),
    ],
)
def test_an_own_servers_connection_failure_names_that_server(exc):
    config = ProviderConfig("http://vllm.internal:8000/v1", CONFIGURED_KEY, "openai")
    for error in (error_from_exception(exc, config), error_from_body({"error": "x"}, config)):
        assert "the model server at vllm.internal" in error.message.replace("The m", "the m")
        assert "Llama API" not in error.message


@pytest.mark.parametrize("key", [CONFIGURED_KEY, *FOREIGN_KEYS])
@pytest.mark.parametrize("prefix", ["Bearer ", "key=", ""])
def test_a_key_at_every_cut_point_is_redacted(key, prefix):
    echoed = prefix + key
    for cut in range(len(echoed) + 1):
        filler = "." * (DETAIL_LIMIT - cut) + " "
        text = filler + echoed + " was refused"
        bodies = [
            text.encode(),
            json.dumps({"detail": text}).encode(),
            json.dumps({"error": {"message": text}}).encode(),
        ]
        for body in bodies:
            for shown in details(body):
                assert not leaks(shown, key), (cut, shown)


def test_any_bearer_token_is_redacted_whatever_it_looks_like():
    assert redact("Authorization: Bearer abc.DEF rejected") == "Authorization: [redacted] rejected"


def test_ordinary_error_text_is_left_alone():
    text = "Model 'Llama-4-Maverick-17B-128E-Instruct-FP8' does not support top_k at /v1/chat"
    assert redact(text, CONFIGURED_KEY) == text


def test_a_huge_body_is_redacted_and_cut_to_the_limit():
    body = ("x" * 100_000 + " Bearer " + FOREIGN_KEYS[0]).encode()
    (message,) = details(body)
    assert len(message) < DETAIL_LIMIT + 100
    assert not leaks(message, FOREIGN_KEYS[0])
