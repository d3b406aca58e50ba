"""What goes upstream: the system prompt plus as many recent turns as the model's context holds."""

from typing import Any

from chatapp.llm import MODEL_CONTEXT_LIMITS, count_message_tokens

# Models we know nothing about (vLLM, Ollama...) get a window most local servers offer.
UNKNOWN_MODEL_CONTEXT = 8192
DEFAULT_OUTPUT_RESERVE = 4096
TITLE_LENGTH = 60


def context_budget(model: str, max_tokens: int | None) -> int:
    """Tokens the prompt may use: the window minus room for the answer (at most half of it)."""
    window = MODEL_CONTEXT_LIMITS.get(model, UNKNOWN_MODEL_CONTEXT)
    reserve = min(max_tokens or DEFAULT_OUTPUT_RESERVE, window // 2)
    return window - reserve


def build_history(
    system_prompt: str, turns: list[dict[str, Any]], model: str, max_tokens: int | None
) -> list[dict[str, Any]]:
    """Drop the oldest turns until the prompt fits; the system prompt and last turn always stay."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    budget = context_budget(model, max_tokens) - count_message_tokens(system)
    kept = list(turns)
    while len(kept) > 1 and count_message_tokens(kept) > budget:
        kept.pop(0)
        while len(kept) > 1 and kept[0]["role"] != "user":
            kept.pop(0)  # a conversation sent upstream starts with a question
    return system + kept


def title_from(content: str) -> str:
    """A short title from the first line of the first question, cut at a word boundary."""
    line = next((ln for ln in content.splitlines() if ln.strip()), "")
    title = " ".join(line.split())
    if len(title) <= TITLE_LENGTH:
        return title or "New conversation"
    cut = title[:TITLE_LENGTH].rsplit(" ", 1)[0] or title[:TITLE_LENGTH]
    return cut.rstrip(" ,.;:") + "…"
