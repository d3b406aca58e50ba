"""A team's monthly token budget: how much it used, and whether a request may still go.

Reads only; admitting a request against the per-minute limit and recording usage are writes,
in `chatapp.teams.actions`.
"""

import math
from datetime import date, timedelta

from django.db.models import Sum
from django.utils import timezone

from chatapp.core.dates import month_start, next_month
from chatapp.teams.models import RecentRequest, Team, TeamPolicy, TeamUsage
from chatapp.teams.policy import PolicyError

RATE_WINDOW = timedelta(minutes=1)  # the per-minute limit's window


def tokens_used(team: Team, since: date, user=None) -> int:
    """The team's tokens since a day; only `user`'s when given."""
    rows = TeamUsage.objects.filter(team=team, day__gte=since)
    if user is not None:
        rows = rows.filter(user=user)
    totals = rows.aggregate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    return (totals["prompt"] or 0) + (totals["completion"] or 0)


def check_budget(team: Team, policy: TeamPolicy, user=None) -> None:
    """Raise PolicyError(quota_exceeded) once the team has used its monthly budget, or
    `user` their own monthly limit in it."""
    today = timezone.now().date()
    resets = f"{next_month(today):%B} 1"
    budget = policy.monthly_token_budget
    if budget is not None:
        used = tokens_used(team, month_start(today))
        if used >= budget:
            message = (
                f"This team has used its monthly budget of {budget:,} tokens ({used:,} used)."
                f" It resets on {resets}; a team owner or admin can raise it on the team's"
                " policy page."
            )
            raise PolicyError("quota_exceeded", message)
    limit = policy.member_monthly_token_budget
    if limit is not None and user is not None:
        used = tokens_used(team, month_start(today), user)
        if used >= limit:
            message = (
                f"You have used your monthly limit of {limit:,} tokens in this team"
                f" ({used:,} used). It resets on {resets}; a team owner or admin can raise it"
                " on the team's policy page."
            )
            raise PolicyError("quota_exceeded", message)


def seconds_until_admitted(user, team: Team) -> int:
    """How long until the per-minute limit admits the user's next request in the team."""
    oldest = (
        RecentRequest.objects.filter(user=user, team=team)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if oldest is None:
        return 1
    wait = (oldest + RATE_WINDOW - timezone.now()).total_seconds()
    return max(1, math.ceil(wait))
