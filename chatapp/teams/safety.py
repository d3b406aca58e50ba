"""Llama Guard screening under a team's safety policy: what counts, and what a verdict means.

The policy (`TeamPolicy.safety_*`) says, for questions and for answers, whether to screen
(`off`), only mark what Llama Guard flags (`flag`) or stop it (`block`), which categories count,
and what to do when no verdict can be had (`fail_open`: go on and say so; `fail_closed`: stop).
Nothing here logs a message's text or its categories.
"""

import logging
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings

from chatapp.core.metrics import SAFETY_FAILURES, SAFETY_VERDICTS
from chatapp.core.text import storable
from chatapp.llm import GUARD_CATEGORIES, LlamaClient
from chatapp.llm.limits import images_of
from chatapp.llm.moderation import text_of
from chatapp.teams.models import SafetyMode, SafetyOnError, TeamPolicy, describe_categories

log = logging.getLogger(__name__)

Stage = Literal["input", "output"]

BLOCKED_QUESTION = (
    "Your team's safety policy blocks questions Llama Guard flags as {categories}:"
    " this one was not sent to the model. Your team's admins can review it."
)
# The error a question ends with when it is refused unscreened (failing closed).
UNSCREENED_QUESTION_CODE = "safety_unavailable"
# The error an answer ends with when it ended (stopped, the server stopping) before its
# question had a verdict: the question was not sent.
UNCHECKED_QUESTION_CODE = "safety_unchecked"
# The error codes of an answer whose question was never sent: it never goes upstream later.
REFUSED_QUESTION_CODES = (UNSCREENED_QUESTION_CODE, "safety_blocked", UNCHECKED_QUESTION_CODE)
UNSCREENED_QUESTION = (
    "Your team's safety policy holds questions until Llama Guard has checked them, and"
    " Llama Guard could not be reached: try again in a moment."
)
UNCHECKED_QUESTION = (
    "The answer stopped before Llama Guard had checked the question, so it was not sent to"
    " the model: regenerate to have it checked and answered."
)


@dataclass(frozen=True)
class SafetyRules:
    """A team's safety policy, read once per answer."""

    input: str = SafetyMode.OFF
    output: str = SafetyMode.OFF
    categories: tuple[str, ...] = tuple(GUARD_CATEGORIES)
    fail_closed: bool = False

    @classmethod
    def of(cls, policy: TeamPolicy) -> "SafetyRules":
        chosen = tuple(c for c in GUARD_CATEGORIES if c in (policy.safety_categories or []))
        return cls(
            input=policy.safety_input,
            output=policy.safety_output,
            categories=chosen or tuple(GUARD_CATEGORIES),
            fail_closed=policy.safety_on_error == SafetyOnError.FAIL_CLOSED,
        )

    def mode(self, stage: Stage) -> str:
        return self.input if stage == "input" else self.output

    def screens(self, stage: Stage) -> bool:
        return self.mode(stage) != SafetyMode.OFF

    @property
    def active(self) -> bool:
        return self.screens("input") or self.screens("output")

    @property
    def may_withhold_answers(self) -> bool:
        """Whether an answer's verdict may withhold it: under `block`, and under `flag` when
        failing closed (an answer Llama Guard cannot judge is withheld)."""
        return self.output == SafetyMode.BLOCK or (self.screens("output") and self.fail_closed)


@dataclass(frozen=True)
class Screening:
    """What screening one message found under the team's rules."""

    flagged: bool = False
    categories: tuple[str, ...] = ()
    blocked: bool = False
    unscreened: bool = False  # no verdict could be had (blocked too when failing closed)


@dataclass(frozen=True)
class Finding:
    """A flagged question or answer, for the review queue."""

    stage: Stage
    categories: tuple[str, ...]
    blocked: bool


async def screen(
    client: LlamaClient, messages: list[dict[str, Any]], rules: SafetyRules, stage: Stage
) -> Screening:
    """Ask Llama Guard about the last message; failures follow the team's fail_open/closed.
    A question's images are screened with it; an answer is judged by its text and the calls it
    made (`tool_calls`, their names and arguments, as `said` writes them)."""
    try:
        verdict = await client.screen(
            [_screened(m, with_images=stage == "input") for m in messages],
            categories=list(rules.categories),
            guard_model=settings.LLAMA_GUARD_MODEL,
            guard_sees_images=settings.LLAMA_GUARD_MODEL in settings.LLAMA_IMAGE_MODELS,
            timeout=settings.LLAMA_GUARD_TIMEOUT,
        )
    except Exception as exc:  # LlmError mostly; whatever it was, the policy decides
        code = getattr(exc, "code", type(exc).__name__)
        log.warning("Safety screening of a %s got no verdict (%s)", stage, code)
        return Screening(unscreened=True, blocked=rules.fail_closed)
    counted = tuple(c for c in verdict.categories if c in rules.categories)
    # A verdict naming no category at all still counts; one naming only others does not.
    if not verdict.flagged or (verdict.categories and not counted):
        return Screening()
    return Screening(True, counted, blocked=rules.mode(stage) == SafetyMode.BLOCK)


def _screened(message: dict[str, Any], with_images: bool) -> dict[str, Any]:
    """The message as Llama Guard reads it: its text as stored (the halves of a pair streamed
    apart are one character, what cannot go upstream, a lone half, is U+FFFD), then its images."""
    text = storable(said(message))
    images = images_of(message) if with_images else []
    if not images:
        return {"role": message["role"], "content": text}
    words = [{"type": "text", "text": text}] if text else []  # a question may be images alone
    return {"role": message["role"], "content": [*words, *images]}


def said(message: dict[str, Any]) -> str:
    """A message's text, then each call it makes with its arguments, a line each: what a
    turn of the model's says, its calls included (their arguments are its words too)."""
    lines = [text_of(message)]
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        lines.append(f"(calls {function.get('name')} with {function.get('arguments')})")
    return "\n".join(lines).strip()


# Not "User:" and "Agent:", which mark the turns of Llama Guard's own prompt.
ROLE_LABELS = {"system": "[system]", "user": "[user]", "assistant": "[assistant]"}


def as_one_question(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Turns someone wrote, as one user message for Llama Guard to judge whole: it assesses
    only the last user message of a conversation. Each turn's text is labelled with its role
    (an assistant turn's calls with their arguments); the images follow. One user turn alone
    goes as it is."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]
    turns = [f"{ROLE_LABELS.get(m['role'], '[tool result]')} {said(m)}" for m in messages]
    images = [part for message in messages for part in images_of(message)]
    text = "\n\n".join(turns)
    return {
        "role": "user",
        "content": [{"type": "text", "text": text}, *images] if images else text,
    }


def count(stage: Stage, screening: Screening, rules: SafetyRules) -> None:
    """Prometheus counters for one message's final screening."""
    if screening.unscreened:
        outcome = "fail_closed" if rules.fail_closed else "fail_open"
        SAFETY_FAILURES.labels(stage, outcome).inc()
    if screening.flagged:
        decision = "block" if screening.blocked else "flag"
        for category in screening.categories or ("unnamed",):
            SAFETY_VERDICTS.labels(stage, category, decision).inc()


def blocked_question_message(categories: tuple[str, ...]) -> str:
    return BLOCKED_QUESTION.format(categories=describe_categories(categories))
