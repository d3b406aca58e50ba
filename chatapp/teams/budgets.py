"""What people see of the monthly budgets: a meter for the team's budget and one for their own
limit, with a warning at 80% and a clear message at 100%. Reads only; the notices owners get
when the team crosses a threshold are written by `actions.note_budget_thresholds`."""

from dataclasses import dataclass
from datetime import date

from django.db.models import F
from django.utils import timezone

from chatapp.core.dates import month_start, next_month
from chatapp.teams.models import BudgetNotice, Team, TeamPolicy
from chatapp.teams.policy import team_policy
from chatapp.teams.quota import tokens_used

WARN_PERCENT = 80
THRESHOLDS = (80, 100)  # owners hear of each once a month


@dataclass(frozen=True)
class Meter:
    kind: str  # "team" or "person"
    label: str
    used: int
    limit: int
    message: str

    @property
    def percent(self) -> int:
        return int(self.used * 100 // self.limit) if self.limit else 0

    @property
    def bar_percent(self) -> int:
        return min(100, self.percent)

    @property
    def level(self) -> str:
        if self.used >= self.limit:
            return "full"
        return "warn" if self.percent >= WARN_PERCENT else "ok"

    def as_json(self) -> dict:
        return {
            "kind": self.kind,
            "label": self.label,
            "used": self.used,
            "limit": self.limit,
            "percent": self.percent,
            "level": self.level,
            "message": self.message,
        }


def meters(team: Team, user, policy: TeamPolicy | None = None) -> list[Meter]:
    """The team's monthly budget and the person's own limit in it, those that are set."""
    policy = policy or team_policy(team)
    today = timezone.now().date()
    month, resets = month_start(today), f"{next_month(today):%B} 1"
    found = []
    if policy.monthly_token_budget:
        used = tokens_used(team, month)
        found.append(
            _meter("team", "Team budget this month", used, policy.monthly_token_budget, resets)
        )
    if policy.member_monthly_token_budget:
        used = tokens_used(team, month, user)
        limit = policy.member_monthly_token_budget
        found.append(_meter("person", "Your limit this month", used, limit, resets))
    return found


def _meter(kind: str, label: str, used: int, limit: int, resets: str) -> Meter:
    whose = "The team has" if kind == "team" else "You have"
    if used >= limit:
        message = (
            f"{whose} used the whole monthly {'budget' if kind == 'team' else 'limit'}"
            f" ({used:,} of {limit:,} tokens): new messages are refused until {resets}."
            " A team owner or admin can raise it."
        )
    elif used * 100 >= limit * WARN_PERCENT:
        message = (
            f"{whose} used {used * 100 // limit}% of the monthly"
            f" {'budget' if kind == 'team' else 'limit'} ({used:,} of {limit:,} tokens)."
        )
    else:
        message = f"{used:,} of {limit:,} tokens used."
    return Meter(kind, label, used, limit, message)


def crossed(team: Team, policy: TeamPolicy, today: date) -> tuple[int, int, list[int]]:
    """(used, budget, the thresholds reached this month that no notice records yet)."""
    budget = policy.monthly_token_budget
    if not budget:
        return 0, 0, []
    month = month_start(today)
    used = tokens_used(team, month)
    reached = [p for p in THRESHOLDS if used * 100 >= budget * p]
    if not reached:
        return used, budget, []
    notices = BudgetNotice.objects.filter(team=team, month=month, budget=budget)
    noted = set(notices.values_list("percent", flat=True))
    return used, budget, [p for p in reached if p not in noted]


def notices_for_owner(user, team: Team) -> list[BudgetNotice]:
    """This month's highest budget notice of a team the user owns (empty for anyone else):
    once the whole budget is used, "passed 80%" only repeats it. A notice of a budget the
    owners have since changed or removed is over: the meter tells the rest."""
    from_month = month_start(timezone.now().date())
    return list(
        BudgetNotice.objects.filter(
            team=team,
            month=from_month,
            budget=F("team__policy__monthly_token_budget"),
            team__memberships__user=user,
            team__memberships__role="owner",
        ).order_by("-percent")[:1]
    )
