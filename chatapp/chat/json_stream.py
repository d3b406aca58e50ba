"""One large JSON object read a piece at a time: the list under one of its names comes as an
iterator of its items, each parsed when its turn comes, so a file of any size is read with the
memory of its largest item (an export's conversations, one by one)."""

import json
from collections.abc import Iterator
from typing import Any, TextIO

CHUNK = 64 * 1024
_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"
_NUMBER_TAIL = set("0123456789.eE+-")
# The most characters a token cut by the end of the text held can show before an error: "\\u00e".
_LONGEST_CUT = 6


class _Reader:
    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.text = ""
        self.pos = 0
        self.ended = False
        # Where the text held starts in the file, for errors that say where they are.
        self.start = {"char": 0, "line": 1, "column": 1}

    def _read_more(self) -> None:
        """Read as much again as is waiting (at least CHUNK): an item of any size is parsed
        a bounded number of times over, not once for each chunk."""
        done, self.text, self.pos = self.text[: self.pos], self.text[self.pos :], 0
        lines = done.count("\n")
        self.start["char"] += len(done)
        self.start["line"] += lines
        if lines:
            self.start["column"] = len(done) - done.rindex("\n")
        else:
            self.start["column"] += len(done)
        more = self.file.read(max(CHUNK, len(self.text)))
        self.ended = not more
        self.text += more

    def peek(self) -> str:
        """The next character that is not white space ("" at the end)."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.text) or self.ended:
                return self.text[self.pos : self.pos + 1]
            self._read_more()

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.error(f"Expecting {char!r}", self.pos)
        self.pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if self.ended or not _cut_short(exc, len(self.text)):
                    raise self.error(exc.msg, exc.pos) from None
                self._read_more()
                continue
            if not self.ended and _may_go_on(value, self.text[end:]):  # read on
                self._read_more()
                continue
            self.pos = end
            return value

    def error(self, message: str, pos: int) -> json.JSONDecodeError:
        """The error at `pos` in the text held, placed in the whole file."""
        error = json.JSONDecodeError(message, self.text, pos)
        line = error.lineno + self.start["line"] - 1
        column = error.colno + (self.start["column"] - 1 if error.lineno == 1 else 0)
        char = pos + self.start["char"]
        error.args = (f"{message}: line {line} column {column} (char {char})",)
        error.lineno, error.colno, error.pos = line, column, char
        return error


def _cut_short(error: json.JSONDecodeError, held: int) -> bool:
    """Whether the error may be only that the text held stops early, so reading on could make
    the value whole: a string not closed yet, or an error within the last few characters (a
    word, an escape or a number cut: "fals", "\\u00e", "-"). Any other is the file's own,
    refused where it is rather than after reading the whole rest of the file to look."""
    return error.msg.startswith("Unterminated string") or error.pos >= held - _LONGEST_CUT


def _may_go_on(value: Any, rest: str) -> bool:
    """Whether a value the text held ends on might be longer with the text still to read:
    anything at its very end, and a number whose point or exponent was cut ("1." parses as 1,
    "2.5e" as 2.5)."""
    if not rest:
        return True
    return type(value) in (int, float) and all(char in _NUMBER_TAIL for char in rest)


def read_object(file: TextIO, *, lazy: str, after: tuple[str, ...]) -> Any:
    """The JSON document in `file`. When it is an object whose `lazy` list comes after every
    name in `after` (as the writer puts them), that list is an iterator, read while it is
    iterated; the members after it are checked once it is done. Otherwise, the whole value."""
    reader = _Reader(file)
    if reader.peek() != "{":
        return _whole(reader)
    reader.expect("{")
    members: dict[str, Any] = {}
    if reader.peek() == "}":
        reader.expect("}")
        return _ended(reader, members)
    while True:
        name = _name(reader)
        reader.expect(":")
        if name == lazy and all(key in members for key in after) and reader.peek() == "[":
            members[name] = _items(reader, members)
            return members
        members[name] = reader.value()
        if reader.peek() == "}":
            reader.expect("}")
            return _ended(reader, members)
        reader.expect(",")


def _items(reader: _Reader, members: dict) -> Iterator[Any]:
    reader.expect("[")
    if reader.peek() == "]":
        reader.expect("]")
    else:
        while True:
            yield reader.value()
            if reader.peek() == "]":
                reader.expect("]")
                break
            reader.expect(",")
    # The rest of the object: read, so a damaged end is refused like a damaged start.
    while reader.peek() == ",":
        reader.expect(",")
        name = _name(reader)
        reader.expect(":")
        members[name] = reader.value()
    reader.expect("}")
    _ended(reader, members)


def _name(reader: _Reader) -> str:
    """A member's name: a string, as json.loads has it."""
    name = reader.value()
    if not isinstance(name, str):
        raise reader.error("Expecting a name", reader.pos)
    return name


def _whole(reader: _Reader) -> Any:
    return _ended(reader, reader.value())


def _ended(reader: _Reader, value: Any) -> Any:
    if reader.peek():
        raise reader.error("Extra data", reader.pos)
    return value
