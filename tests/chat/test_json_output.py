"""JSON output in the chat: the format asked for goes upstream in each protocol's shape, the
answer is checked when it ends, and message.done, conversation.state and the API say so."""

import http.server
import json
import threading

import jsonschema._utils
import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chatapp.chat import json_output
from chatapp.chat.models import Conversation, Message
from chatapp.teams.models import JsonSchema, SystemPrompt, Team

from .conftest import joined_text

pytestmark = pytest.mark.django_db(transaction=True)

RECIPE = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 3},
        "servings": {"type": "integer", "minimum": 2},
        "diet": {"enum": ["vegan", "any"]},
        "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 2},
        "source": {"type": "object", "properties": {"url": {"type": "string", "format": "uri"}}},
    },
    "required": ["title", "servings", "diet", "steps"],
    "additionalProperties": False,
    "$defs": {
        "step": {
            "type": "object",
            "properties": {"n": {"type": "integer"}, "text": {"type": "string"}},
            "required": ["n", "text"],
        }
    },
}


@pytest.fixture(params=["llama", "openai"])
def protocol(request, settings, sim):
    if request.param == "openai":
        settings.LLAMA_API_PROTOCOL = "openai"
        settings.LLAMA_API_BASE_URL = sim.openai_url
    return request.param


@pytest.fixture
def recipe(team) -> JsonSchema:
    return JsonSchema.objects.create(team=team, name="recipe", schema=RECIPE)


async def finished(socket, ids: dict) -> tuple[dict, str]:
    frames = await socket.until_type("message.done", ids["message_id"])
    return frames[-1], joined_text(frames, ids["message_id"])


async def test_json_object_goes_upstream_and_the_answer_is_checked(connect, member, sim, protocol):
    socket = await connect(member)
    ids = await socket.send_message(
        "List three fruits", settings={"response_format": {"type": "json_object"}}
    )
    done, text = await finished(socket, ids)

    sent = sim.requests[-1]["response_format"]
    if protocol == "llama":  # the native API knows text and json_schema formats only
        assert sent == {
            "type": "json_schema",
            "json_schema": {"name": "json_object", "schema": {"type": "object"}},
        }
    else:
        assert sent == {"type": "json_object"}
    assert isinstance(json.loads(text), dict)
    assert done["format"] == {"type": "json_object", "valid": True}
    stored = await Message.objects.aget(pk=ids["message_id"])
    assert stored.format == done["format"]


async def test_a_saved_schema_goes_upstream_and_a_valid_answer_is_marked_valid(
    connect, member, sim, recipe, protocol
):
    socket = await connect(member)
    ids = await socket.send_message(
        "A soup", settings={"response_format": {"type": "json_schema", "schema_id": recipe.pk}}
    )
    done, text = await finished(socket, ids)

    assert sim.requests[-1]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "recipe", "schema": RECIPE},
    }
    assert json.loads(text)["steps"][0].keys() == {"n", "text"}
    assert done["format"] == {
        "type": "json_schema",
        "name": "recipe",
        "schema_id": recipe.pk,
        "valid": True,
    }


@pytest.mark.parametrize(
    ("directive", "error_start"),
    [
        ("[sim:off_schema]", "The answer breaks the schema at the top level: "),
        ("[sim:bad_json]", "The answer is not JSON: "),
    ],
)
async def test_an_answer_that_breaks_the_schema_or_does_not_parse_is_marked_invalid(
    connect, member, sim, recipe, directive, error_start
):
    socket = await connect(member)
    ids = await socket.send_message(
        f"A soup {directive}",
        settings={"response_format": {"type": "json_schema", "schema_id": recipe.pk}},
    )
    done, _ = await finished(socket, ids)

    assert done["status"] == "complete"
    assert done["format"]["valid"] is False
    assert done["format"]["error"].startswith(error_start)
    await socket.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = (await socket.until_type("conversation.state"))[-1]
    assert state["messages"][-1]["format"] == done["format"]


async def test_a_text_answer_has_no_format_and_sends_none_upstream(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message("Plain words please")
    done, _ = await finished(socket, ids)

    assert "response_format" not in sim.requests[-1]
    assert "format" not in done


async def test_the_team_prompt_asks_for_json_and_the_conversation_choice_wins(
    connect, member, sim, team, recipe
):
    await SystemPrompt.objects.acreate(
        team=team,
        name="Data",
        content="Answer in JSON.",
        is_default=True,
        response_format="json_schema",
        json_schema=recipe,
    )
    socket = await connect(member)
    ids = await socket.send_message("A stew")
    done, _ = await finished(socket, ids)
    assert sim.requests[-1]["response_format"]["json_schema"]["name"] == "recipe"
    assert done["format"]["valid"] is True

    await socket.send(
        {
            "type": "chat.send",
            "conversation_id": ids["conversation_id"],
            "content": "Now in words",
            "settings": {"response_format": {"type": "text"}},
        }
    )
    frames = await socket.receive_until(lambda f: f["type"] == "message.done")
    assert "format" not in frames[-1]
    assert "response_format" not in sim.requests[-1]
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.response_format == "text"


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "xml"},
        "json_object",
        {"type": "json_schema"},
        {"type": "json_schema", "schema_id": "1"},
        {"type": "json_object", "schema_id": 1},
        {"type": "text", "extra": True},
    ],
)
async def test_a_malformed_format_is_refused(connect, member, sim, response_format):
    socket = await connect(member)
    error = await socket.expect_error(
        {
            "type": "chat.send",
            "conversation_id": None,
            "content": "hi",
            "settings": {"response_format": response_format},
        }
    )
    assert error["error"]["code"] == "invalid_frame"
    assert error["error"]["field"] == "response_format"
    assert not sim.requests
    assert await Conversation.objects.acount() == 0


async def test_another_teams_schema_or_a_missing_one_is_refused_and_nothing_changes(
    connect, member, sim, recipe
):
    socket = await connect(member)
    ids = await socket.send_message("First")
    await finished(socket, ids)
    other = await Team.objects.acreate(name="Other")
    foreign = await JsonSchema.objects.acreate(team=other, name="secret", schema={"type": "object"})
    requests_before = len(sim.requests)

    for schema_id in (foreign.pk, foreign.pk + 1000):
        error = await socket.expect_error(
            {
                "type": "chat.send",
                "conversation_id": ids["conversation_id"],
                "content": "Second",
                "settings": {"response_format": {"type": "json_schema", "schema_id": schema_id}},
            }
        )
        assert error["error"]["code"] == "not_found"
        assert error["error"]["field"] == "response_format"
        assert "team" in error["error"]["message"]

    assert len(sim.requests) == requests_before
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert (conversation.response_format, conversation.json_schema_id) == ("", None)
    assert await Message.objects.filter(conversation=conversation).acount() == 2


async def test_the_conversation_api_carries_the_format_and_the_outcome(
    connect, member, sim, recipe
):
    socket = await connect(member)
    ids = await socket.send_message(
        "A salad [sim:off_schema]",
        settings={"response_format": {"type": "json_schema", "schema_id": recipe.pk}},
    )
    done, _ = await finished(socket, ids)

    def read():
        client = Client()
        client.force_login(member)
        return client.get(f"/api/conversations/{ids['conversation_id']}/").json()

    data = await database_sync_to_async(read)()
    assert data["response_format"] == {
        "type": "json_schema",
        "schema_id": recipe.pk,
        "name": "recipe",
    }
    answer = data["messages"][-1]
    assert answer["format"]["valid"] is False
    assert answer["format"]["error"] == done["format"]["error"]
    assert data["messages"][0]["format"] is None
    assert "schema" not in answer["format"]  # the schema itself stays on the server


async def test_a_deleted_schema_still_asks_for_json(connect, member, sim, recipe):
    socket = await connect(member)
    ids = await socket.send_message(
        "One", settings={"response_format": {"type": "json_schema", "schema_id": recipe.pk}}
    )
    await finished(socket, ids)
    await recipe.adelete()

    await socket.send(
        {"type": "chat.send", "conversation_id": ids["conversation_id"], "content": "Two"}
    )
    frames = await socket.receive_until(lambda f: f["type"] == "message.done")
    assert sim.requests[-1]["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert frames[-1]["format"] == {"type": "json_object", "valid": True}


class Recorder(http.server.BaseHTTPRequestHandler):
    """A server inside the network: it must never hear from the app."""

    paths: list[str] = []

    def do_GET(self) -> None:
        Recorder.paths.append(self.path)
        body = b'{"type": "object"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def inside_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Recorder.paths = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_an_answer_is_checked_against_its_schema_alone_and_nothing_is_fetched(
    connect, member, sim, team, inside_url, tmp_path
):
    """A schema saved before $refs outside it were refused: its answers cannot be checked, and
    neither a server inside the network nor a file on the server's disk is read."""
    on_disk = tmp_path / "schema.json"
    on_disk.write_text('{"type": "object"}')
    schema = {
        "type": "object",
        "properties": {
            "a": {"$ref": f"{inside_url}/latest/meta-data"},
            "b": {"$ref": on_disk.as_uri()},
        },
    }
    saved = await JsonSchema.objects.acreate(team=team, name="outside", schema=schema)
    socket = await connect(member)
    ids = await socket.send_message(
        "Anything", settings={"response_format": {"type": "json_schema", "schema_id": saved.pk}}
    )
    done, _ = await finished(socket, ids)
    assert done["status"] == "complete"
    assert done["format"]["valid"] is False
    assert done["format"]["error"].startswith("The answer could not be checked against the")
    assert Recorder.paths == []


SLOW_IN_PYTHON = "^(a+)+$"  # Python's re backtracks on it: seconds at 26 a's, doubling each


@pytest.mark.parametrize(
    ("schema", "answer", "valid"),
    [
        ({"properties": {"name": {"pattern": SLOW_IN_PYTHON}}}, {"name": "a" * 8 + "!"}, False),
        ({"properties": {"name": {"pattern": SLOW_IN_PYTHON}}}, {"name": "a" * 8}, True),
        # A name the pattern does not match is not held to its schema...
        ({"patternProperties": {SLOW_IN_PYTHON: {"type": "integer"}}}, {"a!": "x"}, True),
        ({"patternProperties": {SLOW_IN_PYTHON: {"type": "integer"}}}, {"aa": "x"}, False),
        # ...but it is an additional property.
        (
            {"patternProperties": {SLOW_IN_PYTHON: {}}, "additionalProperties": False},
            {"a!": 1},
            False,
        ),
    ],
)
def test_a_schemas_patterns_are_matched_as_json_schema_says(schema, answer, valid):
    requested = {"type": "json_schema", "name": "p", "schema_id": 1, "schema": schema}
    outcome = json_output.check_answer(requested, json.dumps(answer), "complete")
    assert outcome is not None and outcome["valid"] is valid


def test_a_schemas_patterns_run_on_re2_not_pythons_backtracking_re():
    """RE2 matches in time linear in the answer (the answer is checked on the database thread
    every socket shares), and so does not run lookaround: a pattern saved before such
    patterns were refused leaves its answers unchecked, rather than checked by Python's re."""
    schema = {"properties": {"name": {"pattern": "^(?=a)a+$"}}}
    requested = {"type": "json_schema", "name": "p", "schema_id": 1, "schema": schema}
    outcome = json_output.check_answer(requested, json.dumps({"name": "aaa"}), "complete")
    assert outcome is not None and outcome["valid"] is False
    assert outcome["error"].startswith("The answer could not be checked against the schema")


def test_an_answer_whose_check_would_take_too_long_is_reported_not_checked():
    """Nested anyOf branches are each tried in full when the others fail: the work doubles
    with each level of the answer (16 levels took half a minute, on the database thread every
    socket shares). The check stops at a number of steps linear in the answer's length."""
    branch = {"type": "array", "items": {"$ref": "#/$defs/list"}}
    schema = {"$defs": {"list": {"anyOf": [branch, branch]}}, "$ref": "#/$defs/list"}
    requested = {"type": "json_schema", "name": "lists", "schema_id": 1, "schema": schema}
    outcome = json_output.check_answer(requested, "[" * 16 + "1" + "]" * 16, "complete")
    assert outcome is not None and outcome["valid"] is False
    assert outcome["error"] == (
        "The answer could not be checked against the schema: it takes too much work."
    )
    # Shallow answers are still checked, either way.
    assert json_output.check_answer(requested, "[[[]]]", "complete")["valid"] is True
    outcome = json_output.check_answer(requested, "[[1]]", "complete")
    assert outcome["error"].startswith("The answer breaks the schema")


def test_unique_items_are_told_apart_as_json_schema_says_without_comparing_every_pair(
    monkeypatch,
):
    """jsonschema compares each pair of a list of objects for uniqueItems: 4,000 records
    (50 kB of answer) took half a minute, on the database thread every socket shares."""
    comparisons = []
    compare = jsonschema._utils.equal

    def counted(one, two):
        comparisons.append(1)
        return compare(one, two)

    monkeypatch.setattr(jsonschema._utils, "equal", counted)
    requested = {
        "type": "json_schema",
        "name": "records",
        "schema_id": 1,
        "schema": {"type": "array", "uniqueItems": True},
    }

    def valid(answer):
        outcome = json_output.check_answer(requested, json.dumps(answer), "complete")
        assert outcome is not None
        return outcome["valid"]

    records = [{"id": index, "tags": ["a", index]} for index in range(3000)]
    assert valid(records) is True
    assert len(comparisons) < len(records)
    assert valid([*records, {"tags": ["a", 7], "id": 7.0}]) is False  # key order, 7 == 7.0
    assert valid([1, True, 0, False, None, "1", [1], {"1": 1}]) is True  # true is not 1
    assert valid([[1, {"a": [True]}], [1.0, {"a": [True]}]]) is False
    assert valid([[1, {"a": [True]}], [1.0, {"a": [1]}]]) is True
    assert valid([{"a": 1}, {"a": 1, "b": 2}]) is True


def test_a_ref_to_nothing_in_a_schema_saved_earlier_is_explained_when_an_answer_is_checked():
    schema = {"properties": {"step": {"$ref": "#/$defs/stpe"}}, "$defs": {"step": {}}}
    requested = {"type": "json_schema", "name": "steps", "schema_id": 1, "schema": schema}
    outcome = json_output.check_answer(requested, '{"step": 1}', "complete")
    assert outcome is not None and outcome["valid"] is False
    assert outcome["error"] == (
        "The answer could not be checked against the schema: a $ref in it points to nothing"
        " in it (saving the schema again names it)."
    )


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#"}}},
    ],
)
def test_a_ref_loop_in_a_schema_saved_earlier_is_explained_when_an_answer_is_checked(schema):
    requested = {"type": "json_schema", "name": "loop", "schema_id": 1, "schema": schema}
    outcome = json_output.check_answer(requested, '{"step": 1}', "complete")
    assert outcome is not None and outcome["valid"] is False
    assert outcome["error"] == (
        "The answer could not be checked against the schema: a $ref in it leads back to"
        " itself (saving the schema again names it)."
    )


def test_an_answer_nested_deeper_than_the_check_goes_is_said_to_be_so():
    """A tree schema (children refer to the root) is no loop: an answer nested too deeply for
    the validator is named as such."""
    schema = {
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
    }
    requested = {"type": "json_schema", "name": "tree", "schema_id": 1, "schema": schema}
    depth = 400
    text = '{"children": [' * depth + "]}" * depth
    outcome = json_output.check_answer(requested, text, "complete")
    assert outcome is not None and outcome["valid"] is False
    assert outcome["error"] == "The answer is nested too deeply to check against the schema."
