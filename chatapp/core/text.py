"""Text from outside (a tool server, a PDF, a tool's result) made storable and sendable."""

import re

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
