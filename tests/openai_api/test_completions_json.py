"""response_format through POST /v1/chat/completions: passed upstream as the chat sends it,
answered by the simulator in JSON, and checked before anything goes upstream."""

import json

import pytest
from channels.db import database_sync_to_async

from chatapp.teams.models import JsonSchema, ResponseFormat, SystemPrompt
from tests.openai_api.conftest import MODEL, raw, sdk

pytestmark = pytest.mark.django_db(transaction=True)
QUESTION = [{"role": "user", "content": "Name a colour"}]
COLOUR = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "hex": {"type": "string", "minLength": 7}},
    "required": ["name", "hex"],
}


async def test_a_json_schema_goes_upstream_and_the_answer_follows_it(sim, member, team, make_key):
    key = await database_sync_to_async(make_key)(member, team)
    answer = await sdk(key).chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "colour", "schema": COLOUR, "strict": True},
        },
    )
    assert sim.requests[-1]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "colour", "schema": COLOUR},
    }
    value = json.loads(answer.choices[0].message.content)
    assert value.keys() == {"name", "hex"} and len(value["hex"]) >= 7


async def test_strict_goes_to_an_openai_compatible_server_as_it_was_sent(
    sim, member, team, make_key, settings
):
    """OpenAI's json_schema carries `strict` (adherence to the schema, off by default), which
    such servers honour; the native Llama API's format has no such field (the test above)."""
    settings.LLAMA_API_PROTOCOL = "openai"
    settings.LLAMA_API_BASE_URL = sim.openai_url
    key = await database_sync_to_async(make_key)(member, team)
    for strict in (True, False):
        spec = {"name": "colour", "schema": COLOUR, "strict": strict}
        await sdk(key).chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            response_format={"type": "json_schema", "json_schema": spec},
        )
        assert sim.requests[-1]["response_format"] == {"type": "json_schema", "json_schema": spec}
    await sdk(key).chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": COLOUR}},
    )
    assert "strict" not in sim.requests[-1]["response_format"]["json_schema"]


async def test_json_object_streams_a_json_answer(sim, member, team, make_key):
    key = await database_sync_to_async(make_key)(member, team)
    stream = await sdk(key).chat.completions.create(
        model=MODEL, messages=QUESTION, stream=True, response_format={"type": "json_object"}
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert isinstance(json.loads(text), dict)
    # The site's provider speaks the native API: a JSON object is asked for as a schema.
    assert sim.requests[-1]["response_format"]["json_schema"]["schema"] == {"type": "object"}


async def test_text_sends_no_format(sim, member, team, make_key):
    key = await database_sync_to_async(make_key)(member, team)
    await sdk(key).chat.completions.create(
        model=MODEL, messages=QUESTION, response_format={"type": "text"}
    )
    assert "response_format" not in sim.requests[-1]


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "yaml"},
        "json_object",
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"name": "no spaces", "schema": COLOUR}},
        {"type": "json_schema", "json_schema": {"name": "colour", "schema": {"type": "nope"}}},
        {"type": "json_schema", "json_schema": {"schema": COLOUR}},
        {"type": "json_schema", "json_schema": {"name": "loop", "schema": {"$ref": "#"}}},
        {"type": "json_schema", "json_schema": {"name": "c", "schema": COLOUR, "strict": "yes"}},
    ],
)
async def test_a_bad_format_is_400_and_nothing_goes_upstream(
    sim, member, team, make_key, response_format
):
    key = await database_sync_to_async(make_key)(member, team)
    body = {"model": MODEL, "messages": QUESTION, "response_format": response_format}
    async with raw(key) as http:
        response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"].startswith("response_format")
    assert sim.requests == []


@pytest.fixture
def prompt_asking_json(team):
    """The team's default prompt, locked, asking for JSON that follows a saved schema."""
    schema = JsonSchema.objects.create(team=team, name="colour", schema=COLOUR)
    return SystemPrompt.objects.create(
        team=team,
        name="Colours",
        content="Answer with a colour.",
        is_default=True,
        locked=True,
        response_format=ResponseFormat.JSON_SCHEMA,
        json_schema=schema,
    )


async def test_the_teams_prompt_asks_for_its_format_as_on_the_chat_page(
    sim, member, team, make_key, prompt_asking_json
):
    key = await database_sync_to_async(make_key)(member, team)
    answer = await sdk(key).chat.completions.create(model=MODEL, messages=QUESTION)
    assert sim.requests[-1]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "colour", "schema": COLOUR},
    }
    assert json.loads(answer.choices[0].message.content).keys() == {"name", "hex"}
    # The request's own format wins over the prompt's, as a conversation's does.
    await sdk(key).chat.completions.create(
        model=MODEL, messages=QUESTION, response_format={"type": "text"}
    )
    assert "response_format" not in sim.requests[-1]


async def test_a_saved_json_answer_carries_its_check_as_on_the_chat_page(
    sim, member, team, make_key, client
):
    """The saved exchange's answer says whether it kept to its format, so the chat page shows
    it as JSON, with its note when it breaks the schema."""
    key = await database_sync_to_async(make_key)(member, team)
    saved = sdk(key, **{"X-Save-Conversation": "1"})
    off_schema = [{"role": "user", "content": "[sim:off_schema] Name a colour"}]
    answer = await saved.chat.completions.create(
        model=MODEL,
        messages=off_schema,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "colour", "schema": COLOUR},
        },
    )

    def read():
        client.force_login(member)
        path = f"/api/conversations/{answer.model_extra['conversation_id']}/"
        return client.get(path).json()["messages"][-1]

    checked = (await database_sync_to_async(read)())["format"]
    assert checked["type"] == "json_schema" and checked["name"] == "colour"
    assert checked["valid"] is False and "breaks the schema" in checked["error"]
