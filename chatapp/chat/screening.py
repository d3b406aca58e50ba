"""An answer's Llama Guard verdicts as the chat keeps them: the safety fields its frames and
records carry, and the findings the team's review queue lists (chat page and /v1 alike)."""

from chatapp.chat.event_schema import SafetyFields
from chatapp.teams.safety import Finding, Screening, Stage


def category_order(code: str) -> int:
    return int(code[1:]) if code[1:].isdigit() else 0  # S2 before S10


Screened = list[tuple[Stage, Screening]]


def _screened(question: Screening | None, answer: Screening | None) -> Screened:
    stages: list[tuple[Stage, Screening | None]] = [("input", question), ("output", answer)]
    return [(stage, screening) for stage, screening in stages if screening is not None]


def safety_findings(question: Screening | None, answer: Screening | None) -> tuple[Finding, ...]:
    return tuple(
        Finding(stage, s.categories, s.blocked)
        for stage, s in _screened(question, answer)
        if s.flagged
    )


def safety_summary(question: Screening | None, answer: Screening | None) -> SafetyFields:
    """What screening the question and the answer found, stored with the answer."""
    screened = _screened(question, answer)
    flagged = [(stage, s) for stage, s in screened if s.flagged]
    return {
        "flagged": bool(flagged),
        "categories": sorted({c for _, s in flagged for c in s.categories}, key=category_order),
        "stages": [stage for stage, _ in flagged],
        "unscreened": [stage for stage, s in screened if s.unscreened],
    }


def question_screening(summary: SafetyFields | None) -> Screening | None:
    """The question's verdict, from the `safety` of a streaming answer: until the answer's
    end that holds the question's stage alone (`replies.question_screened`)."""
    if summary is None:
        return None
    flagged = "input" in summary["stages"]
    return Screening(
        flagged=flagged,
        categories=tuple(summary["categories"]) if flagged else (),
        unscreened="input" in summary["unscreened"],
    )
