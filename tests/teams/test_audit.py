"""The audit trail: what admin actions write, and the owners' audit page."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chatapp.teams import actions
from chatapp.teams.models import (
    AuditEvent,
    Membership,
    Team,
    TeamPolicy,
    TeamProvider,
    TeamUsage,
)
from tests.support.plans import finds_rows_by, sorts_rows


def test_admin_actions_are_recorded_with_their_actor(team, owner, admin_member, member):
    acting = Membership.objects.get(user=admin_member)
    prompt = actions.save_prompt(admin_member, team, name="P", content="one")
    actions.save_prompt(admin_member, team, prompt, name="P", content="two")
    actions.change_role(acting, Membership.objects.get(user=member), "admin")
    actions.set_policy(admin_member, team, {"rate_limit_per_minute": 4})
    actions.set_provider(owner, team, base_url="", protocol="llama", api_key="k-123456")
    events = list(AuditEvent.objects.order_by("id").values_list("action", "actor__username"))
    assert events == [
        ("prompt.create", "adam"),
        ("prompt.update", "adam"),
        ("member.role", "adam"),
        ("policy.update", "adam"),
        ("provider.key_set", "olivia"),
    ]
    assert "k-123456" not in str(list(AuditEvent.objects.values("summary", "details")))


def test_owners_see_the_trail_newest_first_in_pages(
    owner_client, team, owner, django_assert_max_num_queries
):
    for n in range(60):
        actions.save_prompt(owner, team, name=f"Prompt {n}", content="x")
    url = reverse("teams:audit", args=[team.pk])
    with django_assert_max_num_queries(8):
        response = owner_client.get(url)
    assert response.status_code == 200
    rows = response.context["page"].events
    assert len(rows) == 50 and rows[0].summary == "olivia created the prompt Prompt 59"
    first = response.content.decode()
    assert "Newer</a>" not in first and f'href="?before={rows[-1].pk}"' in first
    older = owner_client.get(url, {"before": rows[-1].pk})
    summaries = [event.summary for event in older.context["page"].events]
    assert summaries == [f"olivia created the prompt Prompt {n}" for n in range(9, -1, -1)]
    second = older.content.decode()
    assert f'href="?after={older.context["page"].events[0].pk}"' in second
    assert "Older</a>" not in second


def test_the_trail_is_per_team(owner_client, team, owner, make_user):
    actions.save_prompt(owner, team, name="Ours", content="o")
    zed = make_user("zed")
    other = actions.create_team(zed, "Other")
    actions.save_prompt(zed, other, name="Theirs", content="z")
    url = reverse("teams:audit", args=[team.pk])
    assert b"Theirs" not in owner_client.get(url).content
    # Newer events of another team are not newer pages of this one.
    newest_of_theirs = AuditEvent.objects.filter(team=other).latest("pk")
    page = owner_client.get(url, {"before": newest_of_theirs.pk + 1}).content.decode()
    assert "Ours" in page and "Theirs" not in page and "Newer</a>" not in page


def test_a_page_of_the_trail_is_read_from_the_team_s_index_without_counting(
    owner_client, team, owner
):
    """Each view counted the team's events for its page numbers, and a later page sorted and
    skipped the ones before it: both grew with the team's trail."""
    for n in range(3):
        actions.save_prompt(owner, team, name=f"Prompt {n}", content="x")
    events = list(AuditEvent.objects.filter(team=team).order_by("pk"))
    url = reverse("teams:audit", args=[team.pk])
    with CaptureQueriesContext(connection) as queries:
        for query in ({}, {"before": events[-1].pk}, {"after": events[0].pk}):
            assert owner_client.get(url, query).status_code == 200
    trail = [q["sql"] for q in queries if 'FROM "teams_auditevent"' in q["sql"]]
    assert not [sql for sql in trail if "COUNT(" in sql.upper()]
    pages = [sql for sql in trail if "ORDER BY" in sql]
    assert pages
    for sql in pages:
        assert not sorts_rows(sql) and finds_rows_by(sql, "team_id")


def test_the_audit_page_says_what_a_policy_change_changed_to(owner_client, team, owner):
    """Owners see only the summary: "changed monthly token budget" alone hides the budget."""
    actions.set_policy(owner, team, {"monthly_token_budget": 100_000, "rate_limit_per_minute": 5})
    actions.set_policy(owner, team, {"monthly_token_budget": 5_000_000, "safety_input": "block"})
    actions.set_policy(owner, team, {"allowed_models": ["Llama-3.3-8B-Instruct"]})
    page = owner_client.get(reverse("teams:audit", args=[team.pk])).content.decode()
    assert (
        "olivia changed monthly token budget from none to 100,000, rate limit per minute"
        " from none to 5" in page
    )
    assert (
        "olivia changed monthly token budget from 100,000 to 5,000,000, safety input from off"
        " to block" in page
    )
    assert "olivia changed allowed models<" in page  # a list: the details hold it


def test_a_summary_too_long_for_the_trail_says_it_was_cut(team, owner):
    values = {f"data_{kind}": "redact" for kind in ("card", "iban", "email", "phone", "api_key")}
    values |= {"data_private_key": "block", "safety_input": "flag", "safety_output": "flag"}
    values |= {"monthly_token_budget": 10**15, "member_monthly_token_budget": 10**14}
    actions.set_policy(owner, team, values)
    event = AuditEvent.objects.get(action="policy.update")
    assert len(event.summary) == 300 and event.summary.endswith("…")
    assert event.details["changes"]["member_monthly_token_budget"] == [None, 10**14]


def test_policy_edits_in_the_admin_are_audited(client, site_admin, team):
    client.force_login(site_admin)
    data = {"team": team.pk, "allowed_models": "[]", "rate_limit_per_minute": "7"}
    data |= {"safety_input": "off", "safety_output": "off", "safety_categories": "[]"}
    data |= {"safety_on_error": "fail_open", "data_patterns": "[]"}
    data |= {f"data_{kind}": "off" for kind in ("card", "iban", "email", "phone", "api_key")}
    data |= {"data_private_key": "off"}
    response = client.post("/admin/teams/teampolicy/add/", data)
    assert response.status_code == 302, response.content[:2000]
    event = AuditEvent.objects.get(action="policy.update")
    assert event.actor == site_admin
    assert event.details["changes"]["rate_limit_per_minute"] == [None, 7]


def test_a_policy_stays_with_its_team_in_the_admin(client, site_admin, team, make_user):
    """Naming another team on a policy's change page neither moves it nor overwrites theirs."""
    client.force_login(site_admin)
    actions.set_policy(site_admin, team, {"rate_limit_per_minute": 3})
    other = actions.create_team(make_user("zed"), "Other")
    actions.set_policy(site_admin, other, {"rate_limit_per_minute": 50})
    data = {"team": other.pk, "allowed_models": "[]", "rate_limit_per_minute": "7"}
    data |= {"safety_input": "off", "safety_output": "off", "safety_categories": "[]"}
    data |= {"safety_on_error": "fail_open", "data_patterns": "[]"}
    data |= {f"data_{kind}": "off" for kind in ("card", "iban", "email", "phone", "api_key")}
    data |= {"data_private_key": "off"}
    response = client.post(f"/admin/teams/teampolicy/{team.pk}/change/", data)
    assert response.status_code == 302, response.content[:2000]
    assert TeamPolicy.objects.get(team=team).rate_limit_per_minute == 7
    assert TeamPolicy.objects.get(team=other).rate_limit_per_minute == 50


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data_patterns", '[{"name": "PROJECT", "pattern": "PRJ-\\\\d+"}]'),
        ("data_patterns", '["PRJ-\\\\d+"]'),
        ("data_patterns", '{"PROJECT": "PRJ-\\\\d+"}'),
        ("data_patterns", '[{"name": "PROJECT", "pattern": "(", "action": "redact"}]'),
        ("safety_categories", '"S10"'),
        ("safety_categories", "[10]"),
        ("allowed_models", "NaN"),
        ("allowed_models", "1e309"),
        ("allowed_models", '{"Llama-3.3-70B-Instruct": true}'),
        ("allowed_models", "[1, 2]"),
        ("allowed_models", '["two words"]'),
        ("allowed_models", '"Llama-3.3-70B-Instruct"'),
    ],
)
def test_the_admin_refuses_a_filter_the_policy_page_would_refuse(
    client, site_admin, team, field, value
):
    """Saved, a pattern without its action made every question of the team fail."""
    client.force_login(site_admin)
    data = {"team": team.pk, "allowed_models": "[]"}
    data |= {"safety_input": "off", "safety_output": "off", "safety_categories": "[]"}
    data |= {"safety_on_error": "fail_open", "data_patterns": "[]"}
    data |= {f"data_{kind}": "off" for kind in ("card", "iban", "email", "phone", "api_key")}
    data |= {"data_private_key": "off", field: value}
    response = client.post("/admin/teams/teampolicy/add/", data)
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not TeamPolicy.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("monthly_token_budget", "0"),
        ("member_monthly_token_budget", "0"),
        ("monthly_token_budget", str(10**15 + 1)),
        ("default_max_tokens", "0"),
        ("max_tokens_limit", "131073"),
        ("rate_limit_per_minute", "10001"),
    ],
)
def test_the_admin_keeps_the_policy_pages_ranges(client, site_admin, team, field, value):
    """A budget of 0 saved there refused every message of the team, while no meter showed
    (a budget of 0 reads as none) and the policy page could not save until it was changed."""
    client.force_login(site_admin)
    data = {"team": team.pk, "allowed_models": "[]"}
    data |= {"safety_input": "off", "safety_output": "off", "safety_categories": "[]"}
    data |= {"safety_on_error": "fail_open", "data_patterns": "[]"}
    data |= {f"data_{kind}": "off" for kind in ("card", "iban", "email", "phone", "api_key")}
    data |= {"data_private_key": "off", field: value}
    response = client.post("/admin/teams/teampolicy/add/", data)
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not TeamPolicy.objects.exists()


@pytest.mark.parametrize("value", ["", "null"])
def test_allowed_models_left_blank_in_the_admin_are_every_model(client, site_admin, team, value):
    client.force_login(site_admin)
    data = {"team": team.pk, "allowed_models": value}
    data |= {"safety_input": "off", "safety_output": "off", "safety_categories": "[]"}
    data |= {"safety_on_error": "fail_open", "data_patterns": "[]"}
    data |= {f"data_{kind}": "off" for kind in ("card", "iban", "email", "phone", "api_key")}
    data |= {"data_private_key": "off", "rate_limit_per_minute": "7"}
    response = client.post("/admin/teams/teampolicy/add/", data)
    assert response.status_code == 302, response.content[:2000]
    assert TeamPolicy.objects.get(team=team).allowed_models == []


def test_the_admin_site_deletes_no_record_or_setting_one_by_one(client, site_admin, team, owner):
    """Deleting these would not be audited: the trail, usage, a team's policy and provider."""
    actions.save_prompt(owner, team, name="P", content="one")
    actions.record_usage(team, owner, "Llama-3.3-8B-Instruct", 5, 7)
    actions.set_policy(owner, team, {"rate_limit_per_minute": 3})
    actions.set_provider(owner, team, base_url="", protocol="llama")
    events = AuditEvent.objects.count()
    client.force_login(site_admin)
    rows = [
        ("auditevent", AuditEvent.objects.first()),
        ("teamusage", TeamUsage.objects.get()),
        ("teampolicy", TeamPolicy.objects.get()),
        ("teamprovider", TeamProvider.objects.get()),
    ]
    for model, row in rows:
        url = f"/admin/teams/{model}/{row.pk}/delete/"
        assert client.post(url, {"post": "yes"}).status_code == 403, model
        listing = client.get(f"/admin/teams/{model}/").content.decode()
        assert "delete_selected" not in listing, model
        bulk = {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
        client.post(f"/admin/teams/{model}/", bulk)
        assert type(row).objects.filter(pk=row.pk).exists(), model
    assert AuditEvent.objects.count() == events


def test_a_team_under_legal_hold_is_not_deleted_until_the_hold_is_lifted(
    client, site_admin, team, owner
):
    """The hold keeps the team's conversations from every deletion, the whole team's too."""
    TeamPolicy.objects.create(team=team, legal_hold=True)
    client.force_login(site_admin)
    url = f"/admin/teams/team/{team.pk}/delete/"
    assert "under legal hold" in client.get(url).content.decode()
    client.post(url, {"post": "yes"})
    bulk = {"action": "delete_selected", "_selected_action": [team.pk], "post": "yes"}
    assert "under legal hold" in client.post("/admin/teams/team/", bulk).content.decode()
    assert Team.objects.filter(pk=team.pk).exists()
    assert not AuditEvent.objects.filter(action="team.delete").exists()
    TeamPolicy.objects.filter(team=team).update(legal_hold=False)
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not Team.objects.filter(pk=team.pk).exists()


def test_the_admin_site_still_deletes_a_whole_team(client, site_admin, team, owner):
    actions.record_usage(team, owner, "Llama-3.3-8B-Instruct", 5, 7)
    actions.set_policy(owner, team, {"rate_limit_per_minute": 3})
    actions.set_provider(owner, team, base_url="", protocol="llama")
    events = AuditEvent.objects.count()
    client.force_login(site_admin)
    response = client.post(f"/admin/teams/team/{team.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not TeamUsage.objects.exists() and not TeamPolicy.objects.exists()
    assert AuditEvent.objects.count() == events + 1  # kept, as the chain needs; and the deletion
