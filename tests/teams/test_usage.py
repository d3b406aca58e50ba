"""Token usage per team, user, model and day, and the usage page."""

import re
import threading
from datetime import date, timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from chatapp.teams.actions import record_usage
from chatapp.teams.models import TeamPolicy, TeamUsage
from chatapp.teams.usage import parse_month
from chatapp.uploads.actions import create_upload
from tests.uploads.files import image_bytes

SMALL, BIG = "Llama-3.3-8B-Instruct", "Llama-3.3-70B-Instruct"


def usage_url(team, month: str | None = None) -> str:
    url = reverse("teams:usage", args=[team.pk])
    return f"{url}?month={month}" if month else url


def test_record_usage_adds_up_per_user_model_and_day(team, owner, member):
    record_usage(team, member, SMALL, 10, 20)
    record_usage(team, member, SMALL, 1, 2)
    record_usage(team, member, BIG, 5, 5)
    record_usage(team, owner, SMALL, 7, 0)
    rows = TeamUsage.objects.order_by("user__username", "model").values_list(
        "user__username", "model", "prompt_tokens", "completion_tokens", "requests"
    )
    assert list(rows) == [
        ("max", BIG, 5, 5, 1),
        ("max", SMALL, 11, 22, 2),
        ("olivia", SMALL, 7, 0, 1),
    ]
    assert set(TeamUsage.objects.values_list("day", flat=True)) == {timezone.now().date()}


def test_record_usage_ignores_missing_or_negative_counts(team, member):
    record_usage(team, member, SMALL, None, -4)
    row = TeamUsage.objects.get()
    assert (row.prompt_tokens, row.completion_tokens, row.requests) == (0, 0, 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_answers_are_all_counted(team, member):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite's shared in-memory test database locks whole tables across threads")

    def answer():
        try:
            for _ in range(5):
                record_usage(team, member, SMALL, 1, 2)
        finally:
            connection.close()

    threads = [threading.Thread(target=answer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    row = TeamUsage.objects.get()
    assert (row.prompt_tokens, row.completion_tokens, row.requests) == (30, 60, 30)


@pytest.fixture
def november(team, owner, member):
    """Usage in November 2026 and one row in October."""
    rows = [
        (member, SMALL, date(2026, 11, 3), 100, 50, 2),
        (member, BIG, date(2026, 11, 4), 1000, 500, 1),
        (owner, SMALL, date(2026, 11, 4), 10, 5, 1),
        (owner, SMALL, date(2026, 10, 30), 7777, 1, 1),
    ]
    for user, model, day, prompt, completion, requests in rows:
        TeamUsage.objects.create(
            team=team,
            user=user,
            model=model,
            day=day,
            prompt_tokens=prompt,
            completion_tokens=completion,
            requests=requests,
        )


def test_usage_page_totals_by_user_and_by_model(owner_client, team, november):
    response = owner_client.get(usage_url(team, "2026-11"))
    assert response.status_code == 200
    report = response.context["report"]
    assert report.totals == {"model_requests": 4, "prompt": 1110, "completion": 555, "total": 1665}
    by_user = [(r["user__username"], r["model_requests"], r["total"]) for r in report.by_user]
    assert by_user == [("max", 3, 1650), ("olivia", 1, 15)]
    by_model = [(r["model"], r["prompt"], r["completion"]) for r in report.by_model]
    assert by_model == [(BIG, 1000, 500), (SMALL, 110, 55)]
    assert len(report.bars) == 30 and report.peak == 1515
    assert b"<svg" in response.content and b"style=" not in response.content
    assert b">1,665<" in response.content and b">1,650<" in response.content


def test_usage_counts_requests_to_the_model_not_answers(owner_client, team, november):
    # A new conversation's title is a request of its own: counting it as an answer would
    # show two answers for one question.
    html = owner_client.get(usage_url(team, "2026-11")).content.decode()
    assert "in 4 requests to the model.</p>" in html
    assert "Each answer is one request, its tool calls included; the title" in html
    assert '<th scope="col" class="num">Requests</th>' in html and "Answers" not in html
    html = owner_client.get(usage_url(team, "2026-10")).content.decode()
    assert "in 1 request to the model." in html


def test_past_months_are_listed_and_shown(owner_client, team, november):
    response = owner_client.get(usage_url(team, "2026-10"))
    assert response.context["report"].totals["total"] == 7778
    months = response.context["months"]
    assert date(2026, 10, 1) in months and date(2026, 11, 1) in months


def test_every_month_since_the_first_usage_is_offered_newest_first(owner_client, team, november):
    months = owner_client.get(usage_url(team, "2026-10")).context["months"]
    this_month = timezone.now().date().replace(day=1)
    assert months[0] == this_month and months[-1] == date(2026, 10, 1)
    assert len(months) == (this_month.year - 2026) * 12 + this_month.month - 10 + 1
    assert months == sorted(set(months), reverse=True)


def test_a_month_without_usage_is_the_one_chosen_in_the_list(owner_client, team, november):
    # Reached by its URL: the list must not say another month than the page shows.
    html = owner_client.get(usage_url(team, "2025-03")).content.decode()
    assert "Usage in March 2025" in html
    assert '<option value="2025-03" selected>March 2025</option>' in html
    assert "No requests to the model in March 2025." in html
    assert "this month" not in html  # March 2025 is not the month under way


def test_usage_page_query_count_does_not_grow(
    owner_client, team, make_user, django_assert_max_num_queries
):
    TeamPolicy.objects.create(team=team, monthly_token_budget=10**6, member_monthly_token_budget=99)
    today = timezone.now().date().replace(day=1)
    for n in range(30):
        user = make_user(f"user{n}")
        for model in (SMALL, BIG):
            TeamUsage.objects.create(
                team=team, user=user, model=model, day=today + timedelta(days=n % 28), requests=1
            )
    with django_assert_max_num_queries(12):
        response = owner_client.get(usage_url(team))
    assert len(response.context["report"].by_user) == 30


def test_a_deleted_users_usage_still_counts(owner_client, team, member, november):
    member.delete()
    response = owner_client.get(usage_url(team, "2026-11"))
    assert response.context["report"].totals["total"] == 1665
    assert b"(deleted user)" in response.content


def test_the_budget_is_shown_against_this_months_usage(owner_client, team, member):
    TeamPolicy.objects.create(team=team, monthly_token_budget=500)
    record_usage(team, member, SMALL, 100, 25)
    response = owner_client.get(usage_url(team))
    assert response.context["used_this_month"] == 125
    assert b'<meter min="0" max="500" value="125"' in response.content


def test_what_each_person_has_left_of_their_limit_this_month_is_shown(
    owner_client, team, owner, member
):
    TeamPolicy.objects.create(team=team, member_monthly_token_budget=1000)
    record_usage(team, member, SMALL, 100, 25)
    record_usage(team, owner, SMALL, 900, 300)
    response = owner_client.get(usage_url(team))
    rows = response.context["report"].by_user
    left = [(r["user__username"], r["total"], r["left"]) for r in rows]
    assert left == [("olivia", 1200, 0), ("max", 125, 875)]
    html = response.content.decode()
    assert "Each person may use 1,000 tokens a month" in html
    assert "anyone not listed has all of it left" in html
    assert '<th scope="col" class="num">Left this month</th>' in html
    assert '<td class="num" data-label="Left this month">875</td>' in html
    assert '<td class="num" data-label="Left this month">0 (limit reached)</td>' in html
    # By model, what is left means nothing.
    assert html.count("Left this month</th>") == 1


def test_a_past_month_or_a_team_without_a_limit_shows_nothing_left(
    owner_client, team, owner, member, november
):
    TeamPolicy.objects.create(team=team, member_monthly_token_budget=1000)
    html = owner_client.get(usage_url(team, "2026-11")).content.decode()
    assert "max" in html and "Left this month" not in html and "Each person may" not in html
    TeamPolicy.objects.filter(team=team).update(member_monthly_token_budget=None)
    record_usage(team, member, SMALL, 100, 25)
    html = owner_client.get(usage_url(team)).content.decode()
    assert "max" in html and "Left this month" not in html and "Each person may" not in html


@pytest.mark.parametrize("budget", [None, 125])
def test_a_deleted_person_has_nothing_left_to_show(owner_client, team, member, budget):
    TeamPolicy.objects.create(
        team=team, monthly_token_budget=budget, member_monthly_token_budget=1000
    )
    record_usage(team, member, SMALL, 100, 25)
    member.delete()
    html = owner_client.get(usage_url(team)).content.decode()
    assert '<td class="num" data-label="Left this month"></td>' in html


def meter_region(html: str) -> str:
    """How a browser shades the page's first <meter> (the HTML spec's gauge regions)."""
    tag = html.split("<meter", 1)[1].split(">", 1)[0]
    attrs = {k: float(v) for k, v in re.findall(r'(\w+)="([\d.]+)"', tag)}
    low_end, high_end = attrs["min"], attrs["max"]
    value = min(max(attrs["value"], low_end), high_end)
    low, high = attrs.get("low", low_end), attrs.get("high", high_end)
    optimum = attrs.get("optimum", (low_end + high_end) / 2)
    if optimum < low:
        return "good" if value <= low else "average" if value <= high else "bad"
    if optimum > high:
        return "good" if value >= high else "average" if value >= low else "bad"
    return "good" if low <= value <= high else "average"


@pytest.mark.parametrize(("used", "region"), [(100, "good"), (450, "bad"), (900, "bad")])
def test_the_budget_meter_turns_red_near_and_over_the_budget(
    owner_client, team, member, used, region
):
    TeamPolicy.objects.create(team=team, monthly_token_budget=500)
    record_usage(team, member, SMALL, used, 0)
    assert meter_region(owner_client.get(usage_url(team)).content.decode()) == region


def test_the_storage_meter_turns_red_when_the_team_is_near_its_quota(
    owner_client, team, member, settings
):
    upload = create_upload(member, team, "photo.png", image_bytes())
    settings.UPLOAD_TEAM_QUOTA_BYTES = upload.size + 10
    html = owner_client.get(usage_url(team)).content.decode()
    assert meter_region(html[html.index('class="usage-storage"') :]) == "bad"


@pytest.mark.parametrize("value", [None, "", "2026", "2026-13", "abc-def", "2026-11-05"])
def test_a_bad_month_shows_the_current_one(value):
    assert parse_month(value, date(2026, 11, 21)) == date(2026, 11, 1)


def test_usage_page_with_a_bad_month_is_fine(owner_client, team):
    assert owner_client.get(usage_url(team, "nonsense")).status_code == 200


def test_nobody_has_more_left_than_the_team_budget_has(owner_client, team, owner, member):
    TeamPolicy.objects.create(
        team=team, monthly_token_budget=1500, member_monthly_token_budget=1000
    )
    record_usage(team, member, SMALL, 100, 25)
    record_usage(team, owner, SMALL, 900, 300)
    response = owner_client.get(usage_url(team))
    rows = response.context["report"].by_user
    # The team has 175 left: max's own 875 is more than he can use.
    assert [(r["user__username"], r["left"]) for r in rows] == [("olivia", 0), ("max", 175)]
    html = response.content.decode()
    assert '<td class="num" data-label="Left this month">175</td>' in html
    assert "no more than the 175 tokens the team's budget has left" in html
    assert "anyone not listed has all of it left" not in html


def test_when_the_team_budget_is_spent_nobody_has_anything_left(owner_client, team, owner, member):
    TeamPolicy.objects.create(team=team, monthly_token_budget=1000, member_monthly_token_budget=900)
    record_usage(team, member, SMALL, 100, 25)
    record_usage(team, owner, SMALL, 700, 300)
    response = owner_client.get(usage_url(team))
    rows = response.context["report"].by_user
    assert [(r["user__username"], r["left"]) for r in rows] == [("olivia", 0), ("max", 0)]
    html = response.content.decode()
    assert '<td class="num" data-label="Left this month">0 (limit reached)</td>' in html
    assert '<td class="num" data-label="Left this month">0 (team budget used up)</td>' in html
    assert "anyone not listed has all of it left" not in html
    assert "The team has used its monthly budget" in html
