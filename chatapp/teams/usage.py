"""A team's token usage for one month: totals by user, by model and by day, and a bar chart."""

import calendar
from dataclasses import dataclass, field
from datetime import date

from django.db.models import F, Sum

from chatapp.teams.models import TeamUsage
from chatapp.teams.policy import month_start, next_month

CHART_WIDTH, CHART_HEIGHT = 720, 180
# Named apart from the model's fields, which they sum.
SUMS = {
    "answers": Sum("requests"),
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


def parse_month(value: str | None, today: date) -> date:
    """'2026-11' -> date(2026, 11, 1); anything else: the current month."""
    try:
        year, month = (int(part) for part in (value or "").split("-"))
        return date(year, month, 1)
    except ValueError:
        return month_start(today)


def months_with_usage(team, today: date) -> list[date]:
    months = set(TeamUsage.objects.filter(team=team).dates("day", "month"))
    months.add(month_start(today))
    return sorted(months, reverse=True)


def month_report(team, month: date) -> MonthReport:
    rows = TeamUsage.objects.filter(team=team, day__gte=month, day__lt=next_month(month))
    by_user = list(
        rows.values("user__username").annotate(**SUMS).order_by("-total", "user__username")
    )
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
