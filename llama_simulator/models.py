"""The models the simulated Llama API serves, and how it counts a prompt's tokens."""

MODELS = (
    "Llama-4-Maverick-17B-128E-Instruct-FP8",
    "Llama-4-Scout-17B-16E-Instruct-FP8",
    "Llama-3.3-70B-Instruct",
    "Llama-3.3-8B-Instruct",
)

# The models that take image_url parts; the others answer 400 to an image.
IMAGE_MODELS = MODELS[:2]

# The Llama API serves every hosted model with a 128K-token window.
CONTEXT_WINDOW = 128_000

# Role markers the chat template wraps around every message.
MESSAGE_OVERHEAD_TOKENS = 4


def message_text(message: dict) -> str:
    """The text of a message whose content is a string or a list of parts."""
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def count_prompt_tokens(messages: list[dict]) -> int:
    """About four characters per token, rounded up, plus the role markers of each message; an
    assistant turn's tool calls (names and arguments) count as its text does."""
    return sum(
        (len(message_text(m)) + _calls_length(m) + 3) // 4 + MESSAGE_OVERHEAD_TOKENS
        for m in messages
    )


def _calls_length(message: dict) -> int:
    functions = [c.get("function") for c in message.get("tool_calls") or () if isinstance(c, dict)]
    return sum(
        len(str(f.get("name") or "")) + len(str(f.get("arguments") or ""))
        for f in functions
        if isinstance(f, dict)
    )
