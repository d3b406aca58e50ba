"""Server-sent events: the framing both the native and OpenAI-compatible streams use."""

from collections.abc import AsyncIterator


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """Yield (event name, data) per event; comments, ids and retry hints are ignored."""
    event = ""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
        elif line.startswith("data:"):
            data.append(_field_value(line, 5))
        elif line.startswith("event:"):
            event = _field_value(line, 6)
    if data:
        yield event or "message", "\n".join(data)


def _field_value(line: str, start: int) -> str:
    # The SSE spec strips exactly one space after the colon.
    return line[start + 1 :] if line[start : start + 1] == " " else line[start:]
