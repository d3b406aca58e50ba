"""Monthly token budgets and per-user rate limits, checked before anything goes upstream."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chatapp.teams.actions import admit_request, record_usage, take_back_usage
from chatapp.teams.models import (
    BudgetHold,
    RecentRequest,
    Team,
    TeamMonthUsage,
    TeamPolicy,
    TeamUsage,
)
from chatapp.teams.policy import PolicyError, team_policy
from chatapp.teams.quota import check_budget, seconds_until_admitted, tokens_used


def check_quota(user, team) -> None:
    """What the chat does before a request goes upstream: the budget (a read), then admission."""
    policy = team_policy(team)
    check_budget(team, policy)
    admit_request(user, team, policy)


def used(team, user, tokens: int, day=None) -> None:
    record_usage(team, user, "m", tokens // 2, tokens - tokens // 2, day=day)


def test_no_policy_means_no_limits(team, member):
    used(team, member, 10**9)
    for _ in range(50):
        check_quota(member, team)
    assert not RecentRequest.objects.exists()


def test_under_budget_passes_and_at_budget_is_refused(team, member, owner):
    TeamPolicy.objects.create(team=team, monthly_token_budget=1000)
    used(team, member, 999)
    check_quota(member, team)
    used(team, owner, 1)
    with pytest.raises(PolicyError) as caught:
        check_quota(member, team)
    assert caught.value.code == "quota_exceeded"
    assert "monthly budget of 1,000 tokens (1,000 used)" in caught.value.message
    assert "resets on" in caught.value.message


def test_last_months_usage_does_not_count(team, member):
    TeamPolicy.objects.create(team=team, monthly_token_budget=1000)
    first_of_month = timezone.now().date().replace(day=1)
    used(team, member, 5000, day=first_of_month - timedelta(days=1))
    check_quota(member, team)


def test_other_teams_usage_does_not_count(team, member):
    TeamPolicy.objects.create(team=team, monthly_token_budget=1000)
    used(Team.objects.create(name="Other"), member, 5000)
    check_quota(member, team)


def test_recorded_usage_counts_against_the_budget(team, member):
    TeamPolicy.objects.create(team=team, monthly_token_budget=100)
    record_usage(team, member, "m", 60, 40)
    with pytest.raises(PolicyError, match="monthly budget"):
        check_quota(member, team)


def test_rate_limit_admits_n_requests_a_minute(team, member):
    TeamPolicy.objects.create(team=team, rate_limit_per_minute=2)
    check_quota(member, team)
    check_quota(member, team)
    with pytest.raises(PolicyError) as caught:
        check_quota(member, team)
    assert caught.value.code == "rate_limited"
    assert "2 messages a minute" in caught.value.message
    assert RecentRequest.objects.count() == 2  # a refused request is not counted


def test_rate_limit_is_per_user_and_per_team(team, member, owner):
    TeamPolicy.objects.create(team=team, rate_limit_per_minute=1)
    check_quota(member, team)
    check_quota(owner, team)
    check_quota(member, Team.objects.create(name="Unlimited"))
    with pytest.raises(PolicyError):
        check_quota(member, team)


def test_the_window_moves_on(team, member):
    TeamPolicy.objects.create(team=team, rate_limit_per_minute=1)
    check_quota(member, team)
    RecentRequest.objects.update(created_at=timezone.now() - timedelta(seconds=61))
    check_quota(member, team)
    assert RecentRequest.objects.count() == 1  # the old one was pruned


def sent_ago(user, team, *seconds: int) -> None:
    now = timezone.now()
    for ago in seconds:
        RecentRequest.objects.create(user=user, team=team, created_at=now - timedelta(seconds=ago))


def test_the_refusal_says_when_the_next_request_is_admitted(team, member):
    TeamPolicy.objects.create(team=team, rate_limit_per_minute=2)
    sent_ago(member, team, 50, 20)
    with pytest.raises(PolicyError) as caught:
        check_quota(member, team)
    assert caught.value.code == "rate_limited"
    wait = int(caught.value.message.split("try again in ")[1].split(" ")[0])
    assert 9 <= wait <= 10  # once the request of 50 seconds ago is a minute old


def test_after_the_limit_is_lowered_the_wait_is_until_one_fewer_than_it_remain(team, member):
    """Sent under a limit of 3, then lowered to 1: the oldest leaving the window still
    leaves two, so the next request is admitted only once all three are a minute old."""
    sent_ago(member, team, 50, 40, 5)
    assert 54 <= seconds_until_admitted(member, team, 1) <= 55
    assert 19 <= seconds_until_admitted(member, team, 2) <= 20
    assert seconds_until_admitted(member, team, 4) == 1  # admitted now: room in the window


def test_the_budget_is_checked_before_the_rate_limit_counts(team, member):
    TeamPolicy.objects.create(team=team, monthly_token_budget=10, rate_limit_per_minute=5)
    used(team, member, 10)
    with pytest.raises(PolicyError, match="monthly budget"):
        check_quota(member, team)
    assert not RecentRequest.objects.exists()


def test_admission_locks_the_membership_only_where_the_database_has_row_locks(team, member):
    """PostgreSQL serialises one user's admissions on the membership row; SQLite's
    transactions already queue every writer, and there the lock would be a plain read."""
    policy = TeamPolicy.objects.create(team=team, rate_limit_per_minute=5)
    with CaptureQueriesContext(connection) as queries:
        admit_request(member, team, policy)
    locks = [q["sql"] for q in queries.captured_queries if 'FROM "teams_membership"' in q["sql"]]
    if connection.features.has_select_for_update:
        assert len(locks) == 1 and "FOR UPDATE" in locks[0]
    else:
        assert locks == []
    assert RecentRequest.objects.count() == 1


def test_what_answers_streaming_may_spend_counts_against_the_budget(team, member, owner):
    """The chat page's answers streaming (`streaming`: the team's, the person's) and the
    API's held tokens count with the tokens used; a hold whose process died, no more."""
    policy = TeamPolicy.objects.create(team=team, monthly_token_budget=1000)
    used(team, member, 400)
    later = timezone.now() + timedelta(minutes=5)
    other = Team.objects.create(name="Other")
    BudgetHold.objects.create(team=other, user=member, tokens=10**6, expires_at=later)
    check_budget(team, policy, member, streaming=(599, 0))
    with pytest.raises(PolicyError) as refused:
        check_budget(team, policy, member, streaming=(600, 0))
    assert "(400 used, and up to 600 held by answers still streaming" in refused.value.message
    hold = BudgetHold.objects.create(team=team, user=owner, tokens=600, expires_at=later)
    with pytest.raises(PolicyError, match="monthly budget"):
        check_budget(team, policy, member)
    BudgetHold.objects.filter(pk=hold.pk).update(expires_at=timezone.now())
    check_budget(team, policy, member)


def test_only_ones_own_answers_streaming_count_against_ones_own_limit(team, member, owner):
    policy = TeamPolicy.objects.create(team=team, member_monthly_token_budget=100)
    later = timezone.now() + timedelta(minutes=5)
    BudgetHold.objects.create(team=team, user=owner, tokens=500, expires_at=later)
    check_budget(team, policy, member, streaming=(500, 0))
    BudgetHold.objects.create(team=team, user=member, tokens=60, expires_at=later)
    with pytest.raises(PolicyError, match="your monthly limit"):
        check_budget(team, policy, member, streaming=(500, 40))


@pytest.mark.parametrize("budget", ["monthly_token_budget", "member_monthly_token_budget"])
def test_a_spent_month_is_not_blamed_on_answers_streaming(team, member, budget):
    """Used past a budget lowered below it, the month is spent: waiting for the answers
    streaming would not help, so the refusal does not tell to try again once they finish."""
    policy = TeamPolicy.objects.create(team=team, **{budget: 100})
    used(team, member, 150)
    later = timezone.now() + timedelta(minutes=5)
    BudgetHold.objects.create(team=team, user=member, tokens=500, expires_at=later)
    with pytest.raises(PolicyError) as refused:
        check_budget(team, policy, member, streaming=(70, 70))
    assert "(150 used)" in refused.value.message
    assert "streaming" not in refused.value.message


def test_the_budget_check_reads_the_months_totals_not_each_days_rows(team, member, owner):
    """Every send checks the budgets: what it reads must not grow with the team's members x
    models x days (45,000 usage rows a month for 500 members using 3 models)."""
    policy = TeamPolicy.objects.create(
        team=team, monthly_token_budget=10**9, member_monthly_token_budget=10**6
    )
    today = timezone.now().date()
    for number in range(1, today.day + 1):
        for model in ("a", "b", "c"):
            record_usage(team, member, model, 1, 1, day=today.replace(day=number))
    with CaptureQueriesContext(connection) as queries:
        check_budget(team, policy, member)
    assert [q["sql"] for q in queries.captured_queries if "teams_teamusage" in q["sql"]] == []


def month_totals(team) -> dict:
    return {
        (row.user_id, row.month): (row.prompt_tokens, row.completion_tokens)
        for row in TeamMonthUsage.objects.filter(team=team)
    }


def test_the_months_totals_are_the_sums_of_the_usage_rows(team, member, owner):
    """What the budgets read stays the sum of what the usage page reads: per key, per model,
    on other days, taken back, and after the person is deleted."""
    today = timezone.now().date()
    this_month = today.replace(day=1)
    last_month = this_month - timedelta(days=1)
    record_usage(team, member, "a", 10, 20)
    record_usage(team, member, "a", 1, 2)
    record_usage(team, member, "b", 100, 200, day=this_month)
    record_usage(team, member, "b", 5, 5, day=last_month)
    record_usage(team, owner, "a", 7, 0)
    record_usage(Team.objects.create(name="Other"), member, "a", 1000, 1000)
    take_back_usage(team.pk, member.pk, "a", today, 1, 2)
    take_back_usage(team.pk, member.pk, "b", last_month, 50, 50)  # more than the row holds
    expected = {
        (member.pk, this_month): (110, 220),
        (member.pk, last_month.replace(day=1)): (0, 0),  # its row is gone, its total is 0,
        (owner.pk, this_month): (7, 0),
    }
    assert month_totals(team) == expected
    assert tokens_used_by_rows(team, this_month) == 337
    member.delete()
    assert month_totals(team)[(None, this_month)] == (110, 220)
    assert tokens_used(team, this_month) == 337


def tokens_used_by_rows(team, month) -> int:
    rows = TeamUsage.objects.filter(team=team, day__gte=month)
    return sum(row.prompt_tokens + row.completion_tokens for row in rows)
