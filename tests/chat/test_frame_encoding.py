"""Server frames as JSON text: orjson's, and Python's JSON for what orjson refuses."""

import json

from chatapp.chat import frames


def test_a_frame_reads_back_as_the_event_with_its_text_unescaped():
    event = {"type": "message.delta", "conversation_id": 7, "seq": 3, "delta": 'Grüße 🦙 "q"\n'}

    text = frames.encode(event)

    assert json.loads(text) == event
    assert "Grüße 🦙" in text  # UTF-8 in the frame, not \\u escapes: fewer bytes on the wire


def test_keys_that_are_not_strings_become_strings_as_with_json():
    assert json.loads(frames.encode({"type": "x", "by_id": {4: "four"}})) == {
        "type": "x",
        "by_id": {"4": "four"},
    }


def test_a_lone_surrogate_goes_out_escaped_as_json_writes_it():
    event = {"type": "message.delta", "delta": "half \ud83d"}

    text = frames.encode(event)

    assert text == json.dumps(event)
    assert json.loads(text) == event
