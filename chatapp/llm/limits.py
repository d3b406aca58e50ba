"""What the known Llama API models accept, and a cheap token estimate for trimming history."""

from typing import Any

KNOWN_MODELS = (
    "Llama-4-Maverick-17B-128E-Instruct-FP8",
    "Llama-4-Scout-17B-16E-Instruct-FP8",
    "Llama-3.3-70B-Instruct",
    "Llama-3.3-8B-Instruct",
)

# The Llama API serves every hosted model with a 128K-token window.
MODEL_CONTEXT_LIMITS: dict[str, int] = dict.fromkeys(KNOWN_MODELS, 128_000)

# Upper bound we accept for max_tokens; the API itself defaults to 4096.
MODEL_MAX_OUTPUT: dict[str, int] = dict.fromkeys(KNOWN_MODELS, 16_384)

# Chat templates add a few tokens of role markers around every message.
MESSAGE_OVERHEAD_TOKENS = 4
# What one image costs a Llama 4 model: a few hundred tokens per tile, several tiles at most.
IMAGE_TOKENS_ESTIMATE = 1500


def count_tokens_estimate(text: str) -> int:
    """About four characters per token, rounded up: close enough for Llama's tokenizer."""
    return count_tokens_estimate_of_length(len(text))


def count_tokens_estimate_of_length(characters: int) -> int:
    return (characters + 3) // 4


def message_text(message: dict[str, Any]) -> str:
    """The text of a message whose content is a string or a list of text parts."""
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def images_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message's image_url parts, in order."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [part for part in content if isinstance(part, dict) and part.get("type") == "image_url"]


def tool_calls_length(message: dict[str, Any]) -> int:
    """The characters of the calls an assistant turn asked for: each function's name and its
    arguments, which go back upstream with the turn."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return 0
    length = 0
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            name, arguments = function.get("name") or "", function.get("arguments") or ""
            length += len(str(name)) + len(str(arguments))
    return length


def count_message_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(
        count_tokens_estimate_of_length(len(message_text(message)) + tool_calls_length(message))
        + IMAGE_TOKENS_ESTIMATE * len(images_of(message))
        + MESSAGE_OVERHEAD_TOKENS
        for message in messages
    )
