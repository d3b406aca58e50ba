"""Counts in words for messages people read."""


def counted(count: int, noun: str) -> str:
    """'1 answer', '3 answers': the nouns counted here all take an s."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
