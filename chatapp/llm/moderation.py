"""Llama Guard: its categories, the prompt format for a Guard model served through chat
completions, and reading its verdicts from either protocol.

The native API screens with `POST {base}/moderations` (one result per message); an
OpenAI-compatible server runs a Guard model through chat completions, which answers `safe`, or
`unsafe` and a line of category codes such as `S1,S10`. Images go to Llama Guard 4 as they go
to a chat model: image_url parts, after the prompt's text when it is Llama Guard's own.
"""

import re
from dataclasses import dataclass
from typing import Any

from .types import LlmError

# Llama Guard 3 and 4's hazard taxonomy (MLCommons), in order.
GUARD_CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}

UNREADABLE = "The safety check sent a verdict that could not be read."


@dataclass(frozen=True)
class Verdict:
    """Llama Guard's judgement of the last message screened."""

    flagged: bool
    categories: tuple[str, ...] = ()


def guard_prompt(messages: list[dict[str, Any]], categories: list[str]) -> str:
    """Llama Guard's own prompt, assessing the last message of `messages` (user or assistant)."""
    role = "Agent" if messages[-1]["role"] == "assistant" else "User"
    listed = "\n".join(f"{code}: {GUARD_CATEGORIES[code]}." for code in categories)
    turns = "\n\n".join(
        f"{'Agent' if m['role'] == 'assistant' else 'User'}: {_quoted(text_of(m))}"
        for m in messages
        if m["role"] in ("user", "assistant")
    )
    return (
        f"Task: Check if there is unsafe content in '{role}' messages in conversations"
        " according our safety policy with the below categories.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{listed}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{turns}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above"
        " conversation:\n - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
    )


# What in a turn's text would read as the prompt's own structure: a line opening a turn of
# its own (`User:`, `Agent:`) or a section's tag.
_TURN_MARKER = re.compile(r"^(?=[ \t]*(?:user|agent)[ \t]*:)", re.I | re.M)
_SECTION_TAG = re.compile(r"<((?:BEGIN|END) (?:CONVERSATION|UNSAFE CONTENT CATEGORIES))>", re.I)


def _quoted(text: str) -> str:
    """A turn's text as one turn: its lines that pose as a turn of their own are quoted (`> `)
    and the prompt's tags lose their brackets, so a question cannot end the conversation early
    or write a harmless last question for Llama Guard to judge in its place."""
    return _SECTION_TAG.sub(r"[\1]", _TURN_MARKER.sub("> ", text))


def text_of(message: dict[str, Any]) -> str:
    """A message's text, whether its content is a string or a list of parts."""
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return "\n".join(
        part.get("text") or "" for part in content if isinstance(part, dict) and "text" in part
    )


def _known(codes: list[str]) -> tuple[str, ...]:
    """A flagged verdict's categories; one Llama Guard does not have means the verdict was
    misread, and would otherwise count as a category the team left out: no verdict."""
    if not all(code in GUARD_CATEGORIES for code in codes):
        raise LlmError("moderation_unreadable", UNREADABLE, retryable=False)
    return tuple(codes)


def read_guard_reply(text: str) -> Verdict:
    """`safe`, or `unsafe` then a line of categories; anything else is an LlmError."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].lower() == "safe":
        return Verdict(False)
    if lines and lines[0].lower() == "unsafe":
        codes = re.split(r"[,\s]+", lines[1].upper()) if len(lines) > 1 else []
        return Verdict(True, _known([code for code in codes if code]))
    raise LlmError("moderation_unreadable", UNREADABLE, retryable=False)


def read_moderation(body: dict[str, Any]) -> Verdict:
    """The verdict of the last message from a `/moderations` reply."""
    results = body.get("results")
    if not isinstance(results, list) or not results or not isinstance(results[-1], dict):
        raise LlmError("moderation_unreadable", UNREADABLE, retryable=False)
    last = results[-1]
    flagged, categories = last.get("flagged"), last.get("flagged_categories") or []
    # No verdict is not a "safe" one: the team's fail_open or fail_closed decides.
    if not isinstance(flagged, bool) or not isinstance(categories, list):
        raise LlmError("moderation_unreadable", UNREADABLE, retryable=False)
    if not all(isinstance(code, str) for code in categories):
        raise LlmError("moderation_unreadable", UNREADABLE, retryable=False)
    return Verdict(flagged, _known(categories) if flagged else ())
