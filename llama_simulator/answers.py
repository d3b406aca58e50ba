"""Deterministic answers: the same conversation always gets the same markdown reply."""

import re
import unicodedata

TOKEN = re.compile(r"\s*\S+|\s+")
QUESTION_LIMIT = 200
LONG_LINE = "{n}. The simulator keeps streaming so you can test scrolling, stopping and speed."


def tokenize(text: str) -> list[str]:
    """Split into word-sized tokens that join back into exactly the same text."""
    return TOKEN.findall(text)


def compose_answer(
    question: str, messages: list[dict], body: dict, received: str | None = None
) -> str:
    """Restate the question, then a short list and a code block, like a helpful model would.

    `received` says what came besides text (images, documents), as one list item.
    """
    if messages and messages[-1].get("role") == "tool":  # answer from the tools' results
        results = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            results.insert(0, " ".join(str(message.get("content") or "").split()))
        said = " | ".join(filter(None, results))[:QUESTION_LIMIT]
        return f"The tool answered: {said}" if said else "The tool gave no answer."
    one_line = " ".join(question.split()) or "(an empty message)"
    if len(one_line) > QUESTION_LIMIT:
        one_line = one_line[:QUESTION_LIMIT] + "…"
    turn = sum(1 for message in messages if message.get("role") == "user")
    system = next((m for m in messages if m.get("role") == "system"), None)
    system_note = " with a system prompt" if system else ""
    literal = repr(one_line[:80]).replace("`", "'")  # a backtick could close the code fence
    return "\n".join(
        [
            f"You asked: *{one_line}*",
            "",
            "Here is a short answer from the simulator:",
            "",
            f"- Your message has {_count(len(question.split()), 'word')}"
            f" and {_count(len(question), 'character')}.",
            f"- This is turn {turn} of the conversation{system_note}.",
            f"- Settings received: {_settings(body)}.",
            *([f"- {received}."] if received else []),
            "",
            "```python",
            f"question = {literal}",
            'print(len(question.split()), "words")',
            "```",
            "",
            "This reply comes from the built-in Llama API simulator;"
            " set LLAMA_API_KEY to talk to the real Llama API.",
        ]
    )


# How the chat asks a model to name a conversation (chatapp.chat.titles.TITLE_INSTRUCTION).
TITLE_REQUEST = "Write a title for this conversation"
TITLE_WORDS = 5
SMALL_WORDS = frozenset(
    "a an and are can could do does for how i in is it me my of on or please should the to"
    " what when where which who why will with would you your".split()
)


def is_title_request(messages: list[dict]) -> bool:
    system = next((m for m in messages if m.get("role") == "system"), None)
    return bool(system) and str(system.get("content") or "").startswith(TITLE_REQUEST)


def compose_title(text: str) -> str:
    """A model-like title: the question's main words, capitalised ("How do I file taxes in
    Spain?" -> "File Taxes Spain")."""
    question = text.split("Question:", 1)[-1].split("Answer:", 1)[0]
    words = [word for word in map(_word, question.split()) if word]
    main = [word for word in words if word.lower() not in SMALL_WORDS] or words
    return " ".join(word[:1].upper() + word[1:] for word in main[:TITLE_WORDS]) or "New Chat"


def _word(token: str) -> str:
    """A word as written between spaces, without the punctuation and symbols around it
    (`"taxes?"` -> `taxes`; an emoji alone -> ""); its accents and vowel signs kept (`كَتَبَ`)."""
    start, end = 0, len(token)
    while start < end and unicodedata.category(token[start])[0] not in "LN":
        start += 1
    while end > start and unicodedata.category(token[end - 1])[0] not in "LNM":
        end -= 1
    return token[start:end]


def long_answer(
    question: str, messages: list[dict], body: dict, tokens: int, received: str | None = None
) -> list[str]:
    """The usual answer followed by numbered lines, exactly `tokens` tokens long."""
    parts = tokenize(compose_answer(question, messages, body, received))
    line = 1
    while len(parts) < tokens:
        parts.extend(tokenize("\n" + LONG_LINE.format(n=line)))
        line += 1
    return parts[:tokens]


def _settings(body: dict) -> str:
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    values = [
        f"model `{body.get('model')}`",
        f"temperature {_or_default(body.get('temperature'))}",
        f"top_p {_or_default(body.get('top_p'))}",
        f"max tokens {_or_default(max_tokens)}",
    ]
    return ", ".join(values)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _or_default(value: object) -> str:
    return "default" if value is None else str(value)
