"""Server-sent events: the framing both the native and OpenAI-compatible streams use.

`sse_stream` reads a streaming response's body as it arrives and parses it with `SSEDecoder`,
bytes in and events out, in one step per network chunk: at chat pace a chunk is one token, so
the layers httpx stacks for text lines (bytes, text, lines, each an async generator with its
own decoder) cost more than the parsing itself.
"""

import codecs
from collections.abc import AsyncIterator

import httpx

Event = tuple[str, str]  # (event name, data)

# A chunk is a token or a few: no event of a working server comes near this. Past it the body
# is refused rather than held, so a line that never ends cannot fill the memory, nor a flood of
# blank lines (200 MB of them are 200 kB gzipped) hold the event loop.
EVENT_LIMIT = 1 << 20


class EventTooLarge(ValueError):
    """More than EVENT_LIMIT bytes without an event."""


class SSEDecoder:
    """Incremental SSE parsing: `feed` the body's bytes as they come, `end` at the close.

    Lines end at CR, LF or CRLF (even split across chunks); data is UTF-8, an invalid byte
    becomes U+FFFD. Comments, ids and retry hints are ignored. More than EVENT_LIMIT bytes
    without an event (one long line or event, or lines that make none) raise EventTooLarge.
    """

    def __init__(self) -> None:
        self._partial = b""  # the start of a line whose end has not arrived
        self._skip_lf = False  # the last chunk ended with CR: a LF that follows ends nothing
        self._event = ""
        self._data: list[str] = []
        self._since = 0  # bytes of the lines read since the last event

    def feed(self, chunk: bytes) -> list[Event]:
        if len(chunk) <= EVENT_LIMIT:
            return self._feed(chunk)
        # A burst a compressed body decoded to: a slice at a time, so that one without events
        # is refused after its first slice, not split into millions of lines first.
        events: list[Event] = []
        for start in range(0, len(chunk), EVENT_LIMIT):
            events += self._feed(chunk[start : start + EVENT_LIMIT])
        return events

    def _feed(self, chunk: bytes) -> list[Event]:
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._partial:
            chunk = self._partial + chunk
        lines = chunk.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > EVENT_LIMIT:
            raise EventTooLarge(f"a line longer than {EVENT_LIMIT} bytes")
        events: list[Event] = []
        for line in lines:
            self._line(line, events)
        return events

    def end(self) -> list[Event]:
        """The body ended: a last line without its end, and an event without its blank line."""
        events: list[Event] = []
        if self._partial:
            self._line(self._partial, events)
            self._partial = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[Event]) -> None:
        self._since += len(line) + 1
        if self._since > EVENT_LIMIT:
            raise EventTooLarge(f"{EVENT_LIMIT} bytes without an event")
        if not line:
            if self._data:
                events.append((self._event or "message", "\n".join(self._data)))
                self._since = 0
            self._event, self._data = "", []
        elif line.startswith(b"data:"):
            self._data.append(_field_value(line, 5))
        elif line.startswith(b"event:"):
            self._event = _field_value(line, 6)


async def sse_stream(
    response: httpx.Response, chunks: AsyncIterator[bytes] | None = None
) -> AsyncIterator[Event]:
    """The events of a streaming response (or of `chunks` of its body), read as they arrive."""
    decoder = SSEDecoder()
    if chunks is None:
        encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
        # Undecoded chunks straight from the transport unless the body is compressed.
        chunks = response.aiter_bytes() if encoded else response.aiter_raw()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.end():
        yield event


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    """Yield (event name, data) per event of text lines (line ends already removed)."""
    decoder = SSEDecoder()
    async for line in lines:
        for event in decoder.feed(line.encode() + b"\n"):
            yield event
    for event in decoder.end():
        yield event


_utf8 = codecs.getdecoder("utf-8")


def _field_value(line: bytes, start: int) -> str:
    # The SSE spec strips exactly one space after the colon.
    value = line[start + 1 :] if line[start : start + 1] == b" " else line[start:]
    return _utf8(value, "replace")[0]
