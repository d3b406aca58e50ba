"""A team's monthly token budget: how much it used, and whether a request may still go.

Answers still streaming count at admission for what they may still spend (their prompt and
max tokens): on their streaming row on the chat page, in a BudgetHold for the API. Reads
only; admitting a request against the per-minute limit, holding tokens and recording usage
are writes, in `chatapp.teams.actions`.
"""

import math
from datetime import date, timedelta

from django.db.models import Sum
from django.utils import timezone

from chatapp.core.dates import month_start, next_month
from chatapp.teams.models import BudgetHold, RecentRequest, Team, TeamMonthUsage, TeamPolicy
from chatapp.teams.policy import PolicyError

RATE_WINDOW = timedelta(minutes=1)  # the per-minute limit's window


def tokens_used(team: Team, month: date, user=None) -> int:
    """The team's tokens in the month starting on `month`; only `user`'s when given. Read from
    the members' totals for the month (a row each), not from each day's usage rows."""
    rows = TeamMonthUsage.objects.filter(team=team, month=month)
    if user is not None:
        rows = rows.filter(user=user)
    totals = rows.aggregate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    return (totals["prompt"] or 0) + (totals["completion"] or 0)


def tokens_held(team: Team, user=None) -> int:
    """The tokens API answers still streaming in the team may spend; only `user`'s when given."""
    rows = BudgetHold.objects.filter(team=team, expires_at__gt=timezone.now())
    if user is not None:
        rows = rows.filter(user=user)
    return rows.aggregate(tokens=Sum("tokens"))["tokens"] or 0


def check_budget(
    team: Team,
    policy: TeamPolicy,
    user=None,
    streaming: tuple[int, int] = (0, 0),
    spent: int = 0,
) -> None:
    """Raise PolicyError(quota_exceeded) once the team's tokens this month, with those that
    answers still streaming may spend, reach its monthly budget, or `user`'s their own
    monthly limit in it.

    `streaming` is what the chat page's answers streaming may spend: the team's and `user`'s;
    `spent`, what the answer asking to go on (a turn after its tools ran) has used so far.
    Run under the lock that queues the team's admissions, in the transaction that holds the
    new answer's tokens, so answers that start together cannot each pass the same gate.
    """
    today = timezone.now().date()
    month, resets = month_start(today), f"{next_month(today):%B} 1"
    budget = policy.monthly_token_budget
    if budget is not None:
        # What is held before what is used: an answer ending in between (its hold released as
        # its usage is recorded, in one transaction) is then counted twice, never missed.
        held = streaming[0] + tokens_held(team)
        used = tokens_used(team, month) + spent
        if used + held >= budget:
            message = f"This team has used its monthly budget of {budget:,} tokens"
            raise PolicyError("quota_exceeded", _refusal(message, used, held, budget, resets))
    limit = policy.member_monthly_token_budget
    if limit is not None and user is not None:
        held = streaming[1] + tokens_held(team, user)
        used = tokens_used(team, month, user) + spent
        if used + held >= limit:
            message = f"You have used your monthly limit of {limit:,} tokens in this team"
            raise PolicyError("quota_exceeded", _refusal(message, used, held, limit, resets))


def month_spent(team: Team, policy: TeamPolicy | None, user=None) -> bool:
    """Whether the team's usage alone this month has reached its budget, or `user`'s their own
    limit: a refusal then lasts until the month ends, not until answers streaming finish."""
    if policy is None:
        return False
    month = month_start(timezone.now().date())
    budget, limit = policy.monthly_token_budget, policy.member_monthly_token_budget
    if budget is not None and tokens_used(team, month) >= budget:
        return True
    return limit is not None and user is not None and tokens_used(team, month, user) >= limit


def _refusal(message: str, used: int, held: int, budget: int, resets: str) -> str:
    if held and used < budget:  # else the month is spent, whenever those answers end
        message += (
            f" ({used:,} used, and up to {held:,} held by answers still streaming: try again"
            " once they finish)."
        )
    else:
        message += f" ({used:,} used)."
    return (
        f"{message} It resets on {resets}; a team owner or admin can raise it on the team's"
        " policy page."
    )


def seconds_until_admitted(user, team: Team, per_minute: int | None) -> int:
    """How long until the per-minute limit admits the user's next request in the team: until
    one fewer than `per_minute` of their requests are left in the window (more may be there
    when the limit was lowered). 1 when it admits one now."""
    if not per_minute:
        return 1
    newest = (
        RecentRequest.objects.filter(user=user, team=team)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
    )
    leaving = newest[per_minute - 1 : per_minute].first()
    if leaving is None:
        return 1
    wait = (leaving + RATE_WINDOW - timezone.now()).total_seconds()
    return max(1, math.ceil(wait))
