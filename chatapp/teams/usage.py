"""A team's token usage for one month (totals by user, by model and by day, and a bar chart),
and the room its uploaded files take."""

import calendar
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Min, Sum

from chatapp.core.dates import first_instant, month_start, next_month
from chatapp.teams.models import ApiKey, SafetyFlag, TeamUsage

CHART_WIDTH, CHART_HEIGHT = 720, 180
# Named apart from the model's fields, which they sum.
SUMS = {
    "model_requests": Sum("requests"),
    "prompt": Sum("prompt_tokens"),
    "completion": Sum("completion_tokens"),
    "total": Sum(F("prompt_tokens") + F("completion_tokens")),
}


@dataclass
class Bar:
    day: date
    prompt_tokens: int
    completion_tokens: int
    x: float
    width: float
    prompt_y: float = 0
    prompt_height: float = 0
    completion_y: float = 0
    completion_height: float = 0


@dataclass
class MonthReport:
    month: date
    by_user: list[dict]
    by_model: list[dict]
    bars: list[Bar]
    peak: int
    totals: dict = field(default_factory=dict)


@dataclass
class StorageUse:
    used: int  # bytes
    files: int
    quota: int  # bytes; 0 means no limit


def storage_use(team) -> StorageUse:
    totals = team.uploads.aggregate(used=Sum("size"), files=Count("id"))
    return StorageUse(totals["used"] or 0, totals["files"], settings.UPLOAD_TEAM_QUOTA_BYTES)


def parse_month(value: str | None, today: date) -> date:
    """'2026-11' -> date(2026, 11, 1); anything else: the current month."""
    try:
        year, month = (int(part) for part in (value or "").split("-"))
        chosen = date(year, month, 1)
        next_month(chosen)  # the report reads up to the next month: 9999-12 has none
    except (ValueError, OverflowError):
        return month_start(today)
    return chosen


def months_to_choose(team, today: date, shown: date) -> list[date]:
    """Every month since the team's first usage (one look at the team's index, not a pass
    over its rows), this month and the one shown; newest first."""
    first = TeamUsage.objects.filter(team=team).aggregate(first=Min("day"))["first"]
    months = {month_start(today), shown}
    month = month_start(first or today)
    while month < month_start(today):
        months.add(month)
        month = next_month(month)
    return sorted(months, reverse=True)


def month_report(
    team, month: date, member_limit: int | None = None, team_left: int | None = None
) -> MonthReport:
    """With `member_limit` (the month is this one), each person's row says what they have
    `left` of it: their monthly limit less what they used, and no more than `team_left`, what
    the team's monthly budget has left (None: no budget). `team_spent` says the team's budget,
    not their own limit, is what leaves them nothing."""
    # Any: the sums are annotated from SUMS, which django-stubs cannot follow.
    rows: Any = TeamUsage.objects.filter(team=team, day__gte=month, day__lt=next_month(month))
    by_user = list(
        rows.values("user__username").annotate(**SUMS).order_by("-total", "user__username")
    )
    if member_limit:
        for row in by_user:
            own = max(0, member_limit - row["total"])
            left = own if team_left is None else min(own, team_left)
            named = bool(row["user__username"])  # a deleted user's has no one to use it
            row["left"] = left if named else None
            row["team_spent"] = named and own > 0 and left == 0
    by_model = list(rows.values("model").annotate(**SUMS).order_by("-total", "model"))
    by_day = {row["day"]: row for row in rows.values("day").annotate(**SUMS)}
    totals = {name: sum(row[name] for row in by_model) for name in SUMS}
    bars, peak = _chart(month, by_day)
    return MonthReport(month, by_user, by_model, bars, peak, totals)


def _chart(month: date, by_day: dict) -> tuple[list[Bar], int]:
    """Stacked bars per day (prompt below, completion above), scaled to the busiest day."""
    days = calendar.monthrange(month.year, month.month)[1]
    peak = max((row["total"] for row in by_day.values()), default=0)
    slot = CHART_WIDTH / days
    bars = []
    for number in range(1, days + 1):
        day = month.replace(day=number)
        row = by_day.get(day, {"prompt": 0, "completion": 0})
        bar = Bar(day, row["prompt"], row["completion"], (number - 1) * slot, slot * 0.8)
        if peak:
            bar.prompt_height = CHART_HEIGHT * bar.prompt_tokens / peak
            bar.completion_height = CHART_HEIGHT * bar.completion_tokens / peak
        bar.prompt_y = CHART_HEIGHT - bar.prompt_height
        bar.completion_y = bar.prompt_y - bar.completion_height
        bars.append(bar)
    return bars, peak


@dataclass
class SafetyCounts:
    """What Llama Guard flagged in a team in one month, and what reviewers made of it."""

    flagged_questions: int = 0
    blocked_questions: int = 0
    flagged_answers: int = 0
    blocked_answers: int = 0
    false_positives: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        return (
            self.flagged_questions
            + self.blocked_questions
            + self.flagged_answers
            + self.blocked_answers
        )


def safety_counts(team, month: date) -> SafetyCounts:
    flags = SafetyFlag.objects.filter(
        team=team,
        created_at__gte=first_instant(month),
        created_at__lt=first_instant(next_month(month)),
    )
    counts = SafetyCounts()
    for row in flags.values("stage", "blocked", "decision").annotate(n=Count("id")):
        noun = "questions" if row["stage"] == "input" else "answers"
        name = f"{'blocked' if row['blocked'] else 'flagged'}_{noun}"
        setattr(counts, name, getattr(counts, name) + row["n"])
        if row["decision"] == "false_positive":
            counts.false_positives += row["n"]
        elif not row["decision"]:
            counts.pending += row["n"]
    return counts


CHARGEBACK_FIELDS = (
    "month",
    "team",
    "person",
    "model",
    "key",
    "key_prefix",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
)
CHAT_PAGE = "chat page"


def chargeback_rows(team, month: date) -> list[dict]:
    """A month's usage by person, model and API key (the chat page counts as no key)."""
    rows: Any = TeamUsage.objects.filter(team=team, day__gte=month, day__lt=next_month(month))
    grouped = list(
        rows.values("user__username", "model", "api_key_ref")
        .annotate(**SUMS)
        .order_by("user__username", "model", "api_key_ref")
    )
    refs = {row["api_key_ref"] for row in grouped if row["api_key_ref"]}
    keys = {key.pk: key for key in ApiKey.objects.filter(pk__in=refs)}
    result = []
    for row in grouped:
        key = keys.get(row["api_key_ref"])
        if not row["api_key_ref"]:
            name, prefix = CHAT_PAGE, ""
        else:
            name = key.name if key else f"deleted key {row['api_key_ref']}"
            prefix = key.prefix if key else ""
        result.append(
            {
                "month": f"{month:%Y-%m}",
                "team": team.name,
                "person": row["user__username"] or "a deleted user",
                "model": row["model"],
                "key": name,
                "key_prefix": prefix,
                "requests": row["model_requests"],
                "prompt_tokens": row["prompt"],
                "completion_tokens": row["completion"],
                "total_tokens": row["total"],
            }
        )
    return result
