"""Llama Guard verdicts, decided by directives in the conversation being screened.

`[sim:flag categories=S1,S10]` in a user message flags that message; `[sim:flag_answer
categories=S10 at=20]` in a user message flags the assistant message that answers it once the
answer is at least 20 tokens long (so a test can trip a block mid-stream); `[sim:flag_image
categories=S12]` flags a user message that carries an image. The same verdicts come from `POST
/moderations` (one result per message) and from the Guard model called through chat
completions with Llama Guard's prompt format (`safe`, or `unsafe` and a line of categories).
Llama Guard 4 sees the images sent with either; the Llama Guard 3 models refuse them.
"""

import re

from .answers import tokenize
from .attachments import question_text, received
from .models import message_text
from .plan import Plan, plan_from

GUARD_MODELS = ("Llama-Guard-4-12B", "Llama-Guard-3-8B", "Llama-Guard-3-1B")
IMAGE_GUARD_MODELS = ("Llama-Guard-4-12B",)

_CONVERSATION = re.compile(r"<BEGIN CONVERSATION>(.*?)<END CONVERSATION>", re.S)
_CATEGORIES = re.compile(
    r"<BEGIN UNSAFE CONTENT CATEGORIES>(.*?)<END UNSAFE CONTENT CATEGORIES>", re.S
)
_CATEGORY = re.compile(r"^(S\d+):", re.M)
_ASSESSED_ROLE = re.compile(r"ONLY THE LAST (User|Agent) message")
_TURN = re.compile(r"^(User|Agent): ", re.M)


def is_guard_model(model: object) -> bool:
    return isinstance(model, str) and model.startswith("Llama-Guard")


def verdicts(header: str | None, messages: list[dict]) -> list[dict]:
    """One {"flagged", "flagged_categories"} per message, as Llama Guard's endpoint answers;
    ContentError for an image that does not decode."""
    results, plan = [], plan_from(header, "")
    for message in messages:
        categories: tuple[str, ...] = ()
        if message.get("role") == "user":
            plan = plan_from(header, question_text(message))
            categories = plan.flag_categories
            if plan.image_categories and received([message]).images:
                more = (c for c in plan.image_categories if c not in categories)
                categories = (*categories, *more)
        elif message.get("role") == "assistant" and _answer_flagged(plan, message):
            categories = plan.answer_categories
        results.append({"flagged": bool(categories), "flagged_categories": list(categories)})
    return results


def guard_plan(header: str | None, messages: list[dict]) -> Plan:
    """The directives of the newest user message screened (guard_fault, guard_delay)."""
    text = next((question_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    return plan_from(header, text)


def guard_answer(header: str | None, prompt: str, images: list[dict]) -> str:
    """What the Guard model says to a Llama Guard prompt: `safe` or `unsafe\\nS1,S10`.
    `images` (image_url parts sent beside the prompt) belong to the newest user turn."""
    messages = prompt_conversation(prompt)
    if not messages:
        return "safe"
    asking = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    if images and asking >= 0:
        text = {"type": "text", "text": messages[asking]["content"]}
        messages[asking] = {"role": "user", "content": [text, *images]}
    # The instruction after the conversation, not words a turn quotes.
    role = _ASSESSED_ROLE.search(prompt.rpartition("<END CONVERSATION>")[2])
    wanted = "assistant" if role and role.group(1) == "Agent" else "user"
    index = max((i for i, m in enumerate(messages) if m["role"] == wanted), default=-1)
    if index < 0:
        return "safe"
    verdict = verdicts(header, messages)[index]
    listed = _CATEGORIES.search(prompt)
    offered = set(_CATEGORY.findall(listed.group(1))) if listed else None
    categories = [c for c in verdict["flagged_categories"] if offered is None or c in offered]
    return "unsafe\n" + ",".join(categories) if categories else "safe"


def prompt_conversation(prompt: str) -> list[dict]:
    """The conversation a Llama Guard prompt quotes, as messages."""
    block = _CONVERSATION.search(prompt)
    if block is None:
        return []
    text = block.group(1)
    starts = list(_TURN.finditer(text))
    messages = []
    for i, start in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        role = "user" if start.group(1) == "User" else "assistant"
        messages.append({"role": role, "content": text[start.end() : end].strip()})
    return messages


def prompt_text(body: dict) -> str:
    """The Llama Guard prompt: the newest user message of a chat request to the Guard model."""
    return message_text(_prompt_message(body))


def prompt_images(body: dict) -> list[dict]:
    """The image_url parts sent with the Llama Guard prompt."""
    content = _prompt_message(body).get("content")
    if not isinstance(content, list):
        return []
    return [p for p in content if isinstance(p, dict) and p.get("type") == "image_url"]


def _prompt_message(body: dict) -> dict:
    messages = body.get("messages") or []
    return next((m for m in reversed(messages) if m.get("role") == "user"), {})


def _answer_flagged(plan: Plan, message: dict) -> bool:
    if not plan.answer_categories:
        return False
    return len(tokenize(message_text(message))) >= plan.answer_flagged_at
