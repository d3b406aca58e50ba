"""The server event schema: it refuses malformed events, and the suite emits every type."""

from pathlib import Path

import pytest

from chatapp.chat import events
from chatapp.chat.event_schema import EVENT_TYPES, EventSchemaError, check_event
from tests.event_checks import COLLECTED_FILES, EMITTED

CHAT_TESTS = Path(__file__).parent
CALL = {
    "id": "call_1",
    "name": "get_weather",
    "arguments": '{"city": "Paris"}',
    "status": "running",
    "content": None,
    "is_error": False,
    "elapsed": None,
    "round": 1,
    "offset": 0,
}


def test_every_builder_makes_an_event_its_schema_accepts():
    message = {
        "id": 2,
        "conversation_id": 1,
        "parent_id": None,
        "sibling_ids": [2],
        "role": "user",
        "content": "Hi",
        "status": "complete",
    }
    built = [
        events.conversation_created("r1", 1, "Hi", 7),
        events.conversation_updated(1, "Greetings"),
        events.conversation_pinned(1, True),
        events.conversation_deleted(1),
        events.team_left(7),
        events.message_created("r1", message),
        events.message_created(None, {**message, "role": "assistant"}, replaces=3),
        events.message_delta(1, 2, 1, "Hel"),
        events.message_retrying(1, 2, 1, 0.5, "rate_limited"),
        events.message_done(1, 2, status="stopped", model="m"),
        events.message_error(1, 2, "interrupted", "Try again.", retryable=True),
        events.message_tool_call(1, 2, CALL),
        events.message_tool_result(1, 2, {**CALL, "status": "done", "content": "ok"}),
        events.conversation_state(1, []),
        events.conversation_switched(1, 4),
        events.error(None, "invalid_json", "The frame is not valid JSON."),
        events.error("r1", "invalid_frame", "Bad.", "content"),
    ]
    assert {check_event(event) for event in built} == EVENT_TYPES


@pytest.mark.parametrize(
    "event",
    [
        {"type": "message.delta", "conversation_id": 1, "message_id": 2, "seq": 1},
        {**events.message_delta(1, 2, 1, "x"), "seq": "1"},
        {**events.message_delta(1, 2, 1, "x"), "surprise": True},
        {**events.message_done(1, 2, status="complete", model="m"), "status": "finished"},
        {"type": "message.unknown"},
        {**events.message_tool_call(1, 2, CALL), "call": {**CALL, "status": "maybe"}},
        ["message.delta"],
    ],
)
def test_a_malformed_event_is_refused(event):
    with pytest.raises(EventSchemaError):
        check_event(event)


@pytest.mark.event_coverage
def test_every_event_type_was_emitted_by_some_test():
    chat_modules = set(CHAT_TESTS.glob("test_*.py"))
    if not chat_modules <= COLLECTED_FILES:
        pytest.skip("needs the whole of tests/chat in the session")
    missing = sorted(EVENT_TYPES - EMITTED)
    assert not missing, f"no test socket ever received: {', '.join(missing)}"
