import gzip

import httpx
import pytest

from chatapp.llm.sse import EventTooLarge, SSEDecoder, sse_stream


def decode(*chunks: bytes) -> list[tuple[str, str]]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.end()


def test_each_event_comes_out_of_the_chunk_that_completes_it():
    decoder = SSEDecoder()

    assert decoder.feed(b'data: {"a": 1}\n') == []
    assert decoder.feed(b'\ndata: {"b"') == [("message", '{"a": 1}')]
    assert decoder.feed(b": 2}\n\n") == [("message", '{"b": 2}')]
    assert decoder.end() == []


def test_several_events_in_one_chunk_keep_their_names_and_multiline_data():
    body = b": comment\ndata: one\ndata:two\n\nevent: error\ndata: {}\n\nid: 7\nretry: 10\n\n"

    assert decode(body) == [("message", "one\ntwo"), ("error", "{}")]


def test_cr_lf_and_crlf_end_lines_even_split_between_chunks():
    assert decode(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n") == [
        ("message", "a"),
        ("message", "b"),
        ("message", "c"),
    ]
    # CR at the end of one chunk, LF at the start of the next: one line end, not two.
    assert decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [("message", "a\nb")]


def test_utf8_split_inside_a_character_and_line_separators_inside_data():
    text = 'data: {"t": "caf\u00e9 \u2028 \U0001f600"}\n\n'.encode()
    cut = text.index("\u00e9".encode()) + 1  # between the two bytes of é

    assert decode(text[:cut], text[cut:]) == [("message", '{"t": "caf\u00e9 \u2028 \U0001f600"}')]
    assert decode(b"data: \xff\n\n") == [("message", "\ufffd")]


def test_the_last_event_counts_without_its_blank_line():
    assert decode(b"data: [DONE]") == [("message", "[DONE]")]


async def test_a_compressed_body_is_decoded_before_parsing():
    body = gzip.compress(b'data: {"x": 1}\n\ndata: [DONE]\n\n')

    async def pieces():
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    response = httpx.Response(200, headers={"content-encoding": "gzip"}, content=pieces())

    assert [event async for event in sse_stream(response)] == [
        ("message", '{"x": 1}'),
        ("message", "[DONE]"),
    ]


async def test_a_plain_body_is_read_as_it_arrives():
    async def pieces():
        yield b"data: a\n"
        yield b"\ndata: b\n\n"

    response = httpx.Response(200, content=pieces())

    assert [event async for event in sse_stream(response)] == [("message", "a"), ("message", "b")]


async def test_a_compressed_flood_of_blank_lines_is_refused_after_its_first_mib():
    """200 MB of line ends, 200 kB gzipped: refused, not split into 200 million lines."""
    body = gzip.compress(b"\n" * 200_000_000)
    sent: list[int] = []

    async def pieces():
        for start in range(0, len(body), 65_536):
            sent.append(1)
            yield body[start : start + 65_536]

    response = httpx.Response(200, headers={"content-encoding": "gzip"}, content=pieces())

    with pytest.raises(EventTooLarge):
        [event async for event in sse_stream(response)]
    assert len(sent) == 1


def test_events_keep_coming_however_long_the_stream():
    decoder = SSEDecoder()
    event = b"data: " + b"a" * 1000 + b"\n\n"
    assert len(decoder.feed(event * 5000)) == 5000  # 5 MB in one chunk, an event per kB
