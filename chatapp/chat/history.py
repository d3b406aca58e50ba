"""What goes upstream: the system prompt plus as many recent turns as the model's context holds."""

from dataclasses import dataclass
from typing import Any

from chatapp.core.text import one_line, visible
from chatapp.llm import count_message_tokens
from chatapp.teams.policy import context_window

DEFAULT_OUTPUT_RESERVE = 4096
TITLE_LENGTH = 60


def context_budget(model: str, max_tokens: int | None) -> int:
    """Tokens the prompt may use: the window minus room for the answer (at most half of it)."""
    window = context_window(model)
    reserve = min(max_tokens or DEFAULT_OUTPUT_RESERVE, window // 2)
    return window - reserve


@dataclass(frozen=True)
class History:
    messages: list[dict[str, Any]]
    tokens: int  # the messages' estimated size, as trimming counted it
    dropped: int = 0  # the oldest turns left out to make room


def build_history(
    system_prompt: str, turns: list[dict[str, Any]], model: str, max_tokens: int | None
) -> History:
    """Drop the oldest turns until the prompt fits; the system prompt and last turn always stay."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    budget = context_budget(model, max_tokens) - count_message_tokens(system)
    sizes = [count_message_tokens([turn]) for turn in turns]  # each counted once, however long
    first, size = 0, sum(sizes)
    while len(turns) - first > 1 and size > budget:
        size -= sizes[first]
        first += 1
        while len(turns) - first > 1 and turns[first]["role"] != "user":
            size -= sizes[first]  # a conversation sent upstream starts with a question
            first += 1
    return History(system + turns[first:], count_message_tokens(system) + size, first)


def title_from(content: str) -> str:
    """A short title from the first line of the first question, cut at a word boundary."""
    line = next((ln for ln in content.splitlines() if visible(ln)), "")
    title = one_line(line)  # no control characters or marks that reorder it
    if len(title) <= TITLE_LENGTH:
        return title or "New conversation"
    cut = title[:TITLE_LENGTH].rsplit(" ", 1)[0] or title[:TITLE_LENGTH]
    return cut.rstrip(" ,.;:") + "…"
