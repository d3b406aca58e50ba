"""Stop sequences on /v1/chat/completions: the answer ends before the first of them, through
the official openai SDK, with the Llama API simulator (which takes no `stop`) upstream."""

import pytest
from channels.db import database_sync_to_async

from chatapp.chat.models import Message
from chatapp.chat.stop_sequences import StopCutter
from chatapp.teams.models import TeamUsage
from tests.openai_api.conftest import MODEL, raw, refused_field, sdk
from tests.support.polling import await_for

pytestmark = pytest.mark.django_db(transaction=True)
QUESTION = [{"role": "user", "content": "Say hello"}]
# The simulator's answer to QUESTION begins so; its tokens are words with their leading space.
OPENING = "You asked: *Say hello*\n\nHere is a "


async def answer_text(client, stream: bool, **options) -> tuple[str, str]:
    """(the answer's text, its finish_reason)."""
    if not stream:
        answer = await client.chat.completions.create(model=MODEL, messages=QUESTION, **options)
        return answer.choices[0].message.content, answer.choices[0].finish_reason
    chunks = await client.chat.completions.create(
        model=MODEL, messages=QUESTION, stream=True, **options
    )
    text, reason = "", None
    async for chunk in chunks:
        text += chunk.choices[0].delta.content or ""
        reason = chunk.choices[0].finish_reason or reason
    return text, reason


@pytest.fixture
async def client(sim, member, team, make_key):
    key = await database_sync_to_async(make_key)(member, team)
    return sdk(key)


@pytest.mark.parametrize("stream", [False, True])
async def test_the_answer_ends_before_the_first_stop_sequence(sim, client, stream):
    whole, _ = await answer_text(client, stream)
    # "short answer" spans two tokens; "```" comes later and is not reached.
    text, reason = await answer_text(client, stream, stop=["```", "short answer"])
    assert (text, reason) == (OPENING, "stop")
    assert whole.startswith(OPENING + "short answer")
    assert "stop" not in sim.requests[-1]  # the Llama API takes none: the relay cuts


@pytest.mark.parametrize("stream", [False, True])
async def test_text_that_only_begins_a_stop_sequence_is_all_relayed(client, stream):
    whole, _ = await answer_text(client, stream)
    # Each begins as the answer's text does, then parts from it (the last at its very end).
    stops = ["Here is a long", "You asked: *Say goodbye*", whole[-4:] + "!"]
    assert await answer_text(client, stream, stop=stops) == (whole, "stop")


async def test_a_cut_answer_closes_upstream_and_is_counted(sim, client):
    messages = [{"role": "user", "content": "Tell me a story [sim:long tokens=5000]"}]
    answer = await client.chat.completions.create(model=MODEL, messages=messages, stop="You")
    assert answer.choices[0].message.content == ""
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close")
    usage = await database_sync_to_async(TeamUsage.objects.get)()
    assert usage.prompt_tokens == answer.usage.prompt_tokens > 0


async def test_a_saved_exchange_keeps_the_answer_as_it_was_cut(sim, member, team, make_key):
    key = await database_sync_to_async(make_key)(member, team)
    client = sdk(key, **{"X-Save-Conversation": "1"})
    text, _ = await answer_text(client, True, stop="short")
    stored = await database_sync_to_async(Message.objects.get)(role="assistant")
    assert stored.content == text == OPENING
    assert (stored.status, stored.finish_reason) == ("complete", "stop")


@pytest.mark.parametrize(
    "stop",
    ["", [""], ["a", 1], ["a", "b", "c", "d", "e"], ["a", "x" * 257], {"a": 1}, 5, True],
)
async def test_bad_stop_values_are_400_and_nothing_goes_upstream(sim, member, team, make_key, stop):
    key = await database_sync_to_async(make_key)(member, team)
    async with raw(key) as http:
        response = await http.post(
            "/v1/chat/completions", json={"messages": QUESTION, "stop": stop}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "stop"
    assert sim.requests == []


@pytest.mark.parametrize(
    "stop", ['"a\\u0000b"', '["ok", "\\u0000"]', '"\\ud800"', '["ok", "x\\udfffy"]']
)
async def test_stop_sequences_that_are_not_text_are_400_and_nothing_goes_upstream(
    sim, member, team, make_key, stop
):
    """NUL and a lone surrogate (sent escaped: JSON can carry them, UTF-8 cannot)."""
    key = await database_sync_to_async(make_key)(member, team)
    error = await refused_field(key, {"messages": QUESTION}, "stop", stop)
    assert "NUL" in error["message"] or "valid Unicode" in error["message"]
    assert sim.requests == []


# --- the cutter, piece by piece ------------------------------------------------------------

TEXT = "one two three four"


def cut(pieces: list[str], sequences: tuple[str, ...]) -> str:
    cutter = StopCutter(sequences)
    out = ""
    for piece in pieces:
        out += cutter.feed(piece)
        if cutter.found:
            return out
    return out + cutter.flush()


@pytest.mark.parametrize(
    ("sequences", "expected"),
    [
        (("three",), "one two "),
        (("four", "two"), "one "),  # the first in the text, whichever is listed first
        (("o t",), "one tw"),
        (("fourteen",), TEXT),
        (("one",), ""),
        ((TEXT,), ""),
        ((TEXT + "!",), TEXT),
    ],
)
def test_a_sequence_is_found_however_the_text_is_split(sequences, expected):
    for first in range(len(TEXT) + 1):
        for second in range(first, len(TEXT) + 1):
            pieces = [TEXT[:first], TEXT[first:second], TEXT[second:]]
            assert cut(pieces, sequences) == expected, pieces


def test_only_what_may_begin_a_sequence_is_held_back():
    cutter = StopCutter(("\n\nUser:",))
    assert cutter.feed("Hello there") == "Hello there"
    assert cutter.feed(".\n") == "."
    assert cutter.feed("\nUs") == ""
    assert cutter.feed("ually") == "\n\nUsually"
    assert not cutter.found
