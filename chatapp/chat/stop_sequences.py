"""Stop sequences of the OpenAI-compatible API: an answer ends where one of the client's
strings first appears, and the client gets the text before it, never the string itself.

The Llama API takes no stop sequences, so the relay cuts the stream: it closes upstream at
the first match and ends the answer with `finish_reason` "stop". Only answers that ask for
stop sequences go through here.
"""

from collections.abc import AsyncGenerator
from contextlib import aclosing

from chatapp.llm import Finish, StreamError, StreamEvent, TextDelta


class StopCutter:
    """Finds the first stop sequence in text that arrives in pieces.

    A piece may end with the start of a sequence that the next piece completes, so that end
    is held back until it is known not to be one (or the stream ends).
    """

    def __init__(self, sequences: tuple[str, ...]):
        self.sequences = sequences
        self.longest = max(map(len, sequences))
        self.held = ""
        self.found = False

    def feed(self, piece: str) -> str:
        """The text that may be relayed now; after a match (`found`), nothing more."""
        text = self.held + piece
        starts = [i for i in (text.find(s) for s in self.sequences) if i >= 0]
        if starts:
            self.found, self.held = True, ""
            return text[: min(starts)]
        hold = self._partial_match(text)
        self.held = text[len(text) - hold :]
        return text[: len(text) - hold]

    def flush(self) -> str:
        """What was held back, once the stream has ended without completing a sequence."""
        text, self.held = self.held, ""
        return text

    def _partial_match(self, text: str) -> int:
        """How many of text's last characters begin some sequence (the most that do)."""
        for size in range(min(len(text), self.longest - 1), 0, -1):
            tail = text[-size:]
            if any(sequence.startswith(tail) for sequence in self.sequences):
                return size
        return 0


async def cut_at_stops(
    events: AsyncGenerator[StreamEvent, None], sequences: tuple[str, ...]
) -> AsyncGenerator[StreamEvent, None]:
    """The upstream events, ending with Finish("stop") at the first stop sequence.

    An answer cut here reports no usage (upstream never finished it): the relay counts it by
    estimate, as it counts any answer cut short. Closing this stream closes upstream's.
    """
    cutter = StopCutter(sequences)
    async with aclosing(events):
        async for event in events:
            if isinstance(event, TextDelta):
                text = cutter.feed(event.text)
                if text:
                    yield TextDelta(text)
                if cutter.found:
                    yield Finish("stop", None, None, {})
                    return
                continue
            if isinstance(event, Finish | StreamError) and cutter.held:
                yield TextDelta(cutter.flush())
            yield event
        if cutter.held:  # upstream stopped with no final event: what was held is still text
            yield TextDelta(cutter.flush())
