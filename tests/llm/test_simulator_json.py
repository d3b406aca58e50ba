"""The simulator honours response_format as Meta's and OpenAI's SDKs send it: JSON answers,
instances valid against the schema, and the broken kinds tests ask for."""

import json

import httpx
import openai
import pytest
from jsonschema import Draft202012Validator
from llama_api_client import LlamaAPIClient

from llama_simulator.structured import instance

from .conftest import KEY, MODEL, user

ORDER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 100},
        "status": {"enum": ["open", "shipped"]},
        "email": {"type": "string", "format": "email"},
        "note": {"type": ["null", "string"], "maxLength": 5},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}, "minItems": 2},
        "customer": {
            "type": "object",
            "properties": {"name": {"type": "string", "minLength": 12}, "vip": {"type": "boolean"}},
            "required": ["name"],
        },
        "total": {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]},
        "tags": {"allOf": [{"type": "array"}, {"items": {"const": "x"}}]},
    },
    "required": ["id", "status", "lines", "customer"],
    "additionalProperties": False,
    "$defs": {
        "line": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
            "required": ["sku", "qty"],
        }
    },
}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER}}


def test_the_instance_is_valid_against_the_schema():
    value = instance(ORDER, ORDER, "a question", 0)
    assert list(Draft202012Validator(ORDER).iter_errors(value)) == []
    assert value["status"] == "open" and value["id"] == 100 and len(value["lines"]) == 2


@pytest.fixture
def llama(sim):
    with LlamaAPIClient(api_key=KEY, base_url=sim.native_url, max_retries=0) as client:
        yield client


@pytest.fixture
def compat(sim):
    with openai.OpenAI(api_key=KEY, base_url=sim.openai_url, max_retries=0) as client:
        yield client


def test_llama_sdk_gets_a_valid_instance_whole_and_streamed(llama, sim):
    reply = llama.chat.completions.create(
        model=MODEL, messages=user("An order"), response_format=SCHEMA_FORMAT
    )
    whole = json.loads(reply.completion_message.content.text)
    assert list(Draft202012Validator(ORDER).iter_errors(whole)) == []
    assert sim.requests[-1]["response_format"] == SCHEMA_FORMAT

    chunks = llama.chat.completions.create(
        model=MODEL, messages=user("An order"), response_format=SCHEMA_FORMAT, stream=True
    )
    streamed = "".join(chunk.event.delta.text for chunk in chunks)
    assert json.loads(streamed) == whole


def test_openai_sdk_gets_json_objects_and_instances_whole_and_streamed(compat):
    reply = compat.chat.completions.create(
        model=MODEL, messages=user("Colours"), response_format={"type": "json_object"}
    )
    assert json.loads(reply.choices[0].message.content)["answer"] == "Colours"

    stream = compat.chat.completions.create(
        model=MODEL, messages=user("An order"), response_format=SCHEMA_FORMAT, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert list(Draft202012Validator(ORDER).iter_errors(json.loads(text))) == []


def test_directives_break_the_json_on_purpose(compat):
    def answer(text: str) -> str:
        reply = compat.chat.completions.create(
            model=MODEL, messages=user(text), response_format=SCHEMA_FORMAT
        )
        return reply.choices[0].message.content

    with pytest.raises(json.JSONDecodeError):
        json.loads(answer("An order [sim:bad_json]"))
    off = json.loads(answer("An order [sim:off_schema]"))
    assert list(Draft202012Validator(ORDER).iter_errors(off)) != []


@pytest.mark.parametrize(
    ("route", "response_format"),
    [
        ("native", {"type": "json_object"}),  # not in llama-api-client's ResponseFormat
        ("native", {"type": "json_schema", "json_schema": {"name": "x"}}),
        ("openai", {"type": "xml"}),
        ("openai", {"type": "json_schema", "json_schema": {"name": "x", "schema": []}}),
    ],
)
def test_a_malformed_response_format_is_a_400(sim, route, response_format):
    base = sim.native_url if route == "native" else sim.openai_url
    response = httpx.post(
        f"{base}/chat/completions",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": MODEL, "messages": user("hi"), "response_format": response_format},
    )
    assert response.status_code == 400
    assert "response_format" in response.text


def values_in(value) -> int:
    if isinstance(value, dict):
        return 1 + sum(values_in(item) for item in value.values())
    if isinstance(value, list):
        return 1 + sum(values_in(item) for item in value)
    return 1


def lists_of_ten(levels: int) -> dict:
    schema: dict = {"type": "array", "minItems": 10}
    for _ in range(levels - 1):
        schema = {"type": "array", "minItems": 10, "items": schema}
    return schema


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "minItems": 1_000_000},
        {"type": "object", "properties": {"a": {"type": "string", "minLength": 10_000_000}}},
        lists_of_ten(5),  # 100,000 values (and 10 ** 12 at twelve levels)
    ],
)
def test_a_schema_asking_for_a_huge_instance_gets_a_bounded_one(schema):
    """A team's schema may ask for millions of items (or, nested, more than memory holds):
    the simulator builds at most 10,000 values and strings of at most 10,000 characters."""
    value = instance(schema, schema, "a question", 0)
    assert values_in(value) <= 10_000
    assert len(json.dumps(value)) <= 200_000
