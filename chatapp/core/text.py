"""Text from outside (a tool server, a PDF, a tool's result) made storable and sendable."""

import re

# NUL, which PostgreSQL cannot store, and unpaired surrogates, which are not UTF-8: no request
# or row can carry them.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """The text with each character no database or request can carry replaced by U+FFFD."""
    return UNSTORABLE.sub("\ufffd", text)
