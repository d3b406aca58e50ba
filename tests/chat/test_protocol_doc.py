"""docs/protocol.md names exactly the websocket frames the server speaks: every client frame
type it lists is handled and no other, and every server event it lists is in the schema,
with the same top-level fields, and no other.

The names outside clients rely on (the design's contract) are pinned here too: a rename in
the code or in the doc fails one of these tests."""

import re
import typing
from pathlib import Path
from typing import Any, cast

import pytest

from chatapp.chat.event_schema import SCHEMAS

pytestmark = pytest.mark.django_db(transaction=True)

PROTOCOL = (Path(__file__).resolve().parents[2] / "docs/protocol.md").read_text()
ROW = re.compile(r"^\| `([a-z_.]+)` \| (.*?) \| ", re.M)

# The contract's websocket names (DESIGN.md): frame types and their fields, never renamed.
CONTRACT_CLIENT_FRAMES = {
    "chat.send",
    "chat.stop",
    "chat.regenerate",
    "chat.subscribe",
    "chat.edit",
    "chat.switch",
}
CONTRACT_EVENTS = {
    "conversation.created": {"request_id", "conversation"},
    "message.created": {"request_id", "message"},
    "message.delta": {"message_id", "seq", "text"},
    "message.done": {"message_id", "status", "finish_reason", "usage"},
    "message.error": {"message_id", "error"},
    "message.tool_call": {"conversation_id", "message_id", "call"},
    "message.tool_result": {"conversation_id", "message_id", "call_id", "content", "is_error"},
    "conversation.state": {"conversation_id", "messages"},
    "error": {"request_id", "error"},
}


def table(heading: str) -> dict[str, str]:
    """The rows of the table under a heading: first cell (a backquoted name) -> second cell."""
    section = PROTOCOL.split(heading, 1)[1].split("\n#", 1)[0]
    return dict(ROW.findall(section))


def top_level_names(cell: str) -> set[str]:
    """The field names a table cell lists: `name`, `name?` or `name: {...}`, leaving out
    those in (remarks)."""
    spans = re.findall(r"`([^`]*)`", re.sub(r"\([^)]*\)", "", cell))
    return {match[1] for span in spans if (match := re.match(r"([a-z_]+)\??(:|$)", span))}


def schema_fields(kind: str) -> tuple[set[str], set[str]]:
    """(every field, the required ones) of an event's schema, without `type`."""
    schema = SCHEMAS[kind]
    return set(schema.__annotations__) - {"type"}, set(schema.__required_keys__) - {"type"}


def test_the_documented_client_frames_include_the_contracts():
    assert CONTRACT_CLIENT_FRAMES <= set(table("### Client -> server frames"))


async def test_every_documented_client_frame_is_handled_and_no_other(connect, member):
    documented = set(table("### Client -> server frames"))
    socket = await connect(member)
    for kind in sorted(documented):
        reply = await socket.expect_error({"type": kind})  # no fields: refused, but known
        assert reply["error"]["code"] != "unknown_type", kind
    unknown = await socket.expect_error({"type": "chat.dance"})
    assert unknown["error"]["code"] == "unknown_type"
    offered = set(re.findall(r"chat\.[a-z_]+", unknown["error"]["message"]))
    assert offered == documented


def test_every_documented_event_is_in_the_schema_and_no_other():
    assert set(table("### Server -> client events")) == set(SCHEMAS)


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_each_event_has_the_documented_fields(kind):
    documented = top_level_names(table("### Server -> client events")[kind])
    every, required = schema_fields(kind)
    assert documented <= every, f"documented, not in the schema: {documented - every}"
    assert required <= documented, f"in the schema, not documented: {required - documented}"


@pytest.mark.parametrize("kind", sorted(CONTRACT_EVENTS))
def test_the_contracts_event_fields_are_always_sent(kind):
    _, required = schema_fields(kind)
    assert CONTRACT_EVENTS[kind] <= required


def nested_fields(cell: str) -> dict[str, set[str]]:
    """The objects a table cell spells out, `name: {a, b?}` or `name: [{a, b?}]`: name -> the
    fields listed inside, without their `?`."""
    found = re.finditer(r"`([a-z_]+)\??: \[?\{([^}`]*)\}", cell)
    return {m[1]: {field.strip().rstrip("?") for field in m[2].split(",")} for m in found}


def object_schema(hint: object) -> type[Any]:
    """The TypedDict inside a field's type: itself, or in a list, or beside None."""
    for candidate in (hint, *typing.get_args(hint)):
        if hasattr(candidate, "__required_keys__"):
            return cast(type[Any], candidate)
        inner = [a for a in typing.get_args(candidate) if hasattr(a, "__required_keys__")]
        if inner:
            return cast(type[Any], inner[0])
    raise AssertionError(f"no object in {hint}")


NESTED = [
    (kind, name)
    for kind, cell in table("### Server -> client events").items()
    for name in nested_fields(cell)
]


def test_the_events_nested_objects_are_read_from_the_doc():
    assert {("message.created", "message"), ("conversation.state", "messages")} <= set(NESTED)
    assert ("message.tool_call", "call") in NESTED and ("error", "error") in NESTED


@pytest.mark.parametrize(("kind", "name"), NESTED)
def test_each_events_nested_object_has_the_documented_fields(kind, name):
    """`message: {id, ...}` and the like: what the doc spells out is in the schema, and every
    field the schema always sends is spelled out."""
    documented = nested_fields(table("### Server -> client events")[kind])[name]
    schema = object_schema(typing.get_type_hints(SCHEMAS[kind])[name])
    every, required = set(schema.__annotations__), set(schema.__required_keys__)
    assert documented <= every, f"documented, not in the schema: {documented - every}"
    assert required <= documented, f"in the schema, not documented: {required - documented}"
