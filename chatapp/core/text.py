"""Text from outside (a tool server, a PDF, a tool's result) made storable and sendable, and
names held to one line."""

import re
import unicodedata

from django import forms
from django.core.exceptions import ValidationError

# NUL, which PostgreSQL cannot store, and unpaired surrogates, which are not UTF-8: no request
# or row can carry them.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """The text with each character no database or request can carry replaced by U+FFFD.

    The two halves of a surrogate pair that arrived apart (a model's answer streams a JSON
    escape per token) are the one character they stand for."""
    if not UNSTORABLE.search(text):
        return text
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return UNSTORABLE.sub("\ufffd", text)


# Line breaks, tabs and other control characters, and the invisible marks that reorder the
# text around them (direction overrides and isolates): a name others see, or that heads a mail,
# is one line that reads as it was typed.
NOT_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


# Letters and symbols drawn as nothing (Hangul fillers, the blank Braille pattern).
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def visible(text: str) -> bool:
    """Whether the text shows something: a letter, digit, punctuation mark or symbol, not only
    spaces, zero-width characters, lone accents or blank letters."""
    return any(unicodedata.category(c)[0] in "LNPS" and c not in BLANK_LETTERS for c in text)


def validate_one_line(value: str) -> None:
    """A form field's validator: ValidationError for a value of more than one line of text, or
    one with nothing to see (a name every list would show as a blank)."""
    if NOT_ONE_LINE.search(value):
        raise ValidationError(
            "Write it as one line of text, without line breaks, tabs, control characters or"
            " marks that change the text's direction.",
            code="not_one_line",
        )
    if not visible(value):
        raise ValidationError(
            "This has nothing to see: write a name with letters, digits or symbols.",
            code="invisible",
        )


def composed(text: str) -> str:
    """The text in Unicode's composed form (NFC): "café" typed with é and typed as e and a
    combining accent (U+0301) look alike, and are one name once composed."""
    return unicodedata.normalize("NFC", text)


class NameField(forms.CharField):
    """A name others read, composed (NFC) before its checks: its length, and whether another
    of the same name exists."""

    def to_python(self, value) -> str | None:
        text = super().to_python(value)
        return composed(text) if text else text


def one_line(text: str) -> str:
    """The text as one line: each run of spaces and of what validate_one_line refuses, one space
    (for a mail's subject, which a line break would make two headers)."""
    return " ".join(NOT_ONE_LINE.sub(" ", text).split())


def file_slug(text: str, length: int = 50) -> str:
    """The text as part of a file name: its letters, marks and digits of any script in lower
    case, every run of anything else (spaces, punctuation, emoji, invisible marks) one hyphen."""
    kept = (c if unicodedata.category(c)[0] in "LMN" else " " for c in text.lower())
    words = unicodedata.normalize("NFC", "".join(kept)).split()
    return "-".join(words)[:length].strip("-")
