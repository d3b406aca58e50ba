"""Switching the current team (`PATCH /api/me/`) and listing one team's conversations."""

import json

import pytest

from chatapp.teams.models import Membership, Role, Team
from chatapp.teams.services import SESSION_TEAM_KEY

URL = "/api/conversations/"


def switch(client, body) -> object:
    data = body if isinstance(body, str) else json.dumps(body)
    return client.patch("/api/me/", data, content_type="application/json")


@pytest.fixture
def beta(member):
    team = Team.objects.create(name="Beta")
    Membership.objects.create(team=team, user=member, role=Role.MEMBER)
    return team


def test_switch_makes_another_team_current(member_client, team, beta):
    assert member_client.get("/api/me/").json()["current_team"]["id"] == team.pk
    response = switch(member_client, {"current_team": beta.pk})
    assert response.status_code == 200
    assert response.json()["current_team"] == {"id": beta.pk, "name": "Beta", "role": "member"}
    assert member_client.session[SESSION_TEAM_KEY] == beta.pk
    assert member_client.get("/api/me/").json()["current_team"]["id"] == beta.pk


def test_switch_to_a_team_you_are_not_in_is_404(member_client, team, site_admin):
    elsewhere = Team.objects.create(name="Elsewhere")
    Membership.objects.create(team=elsewhere, user=site_admin, role=Role.OWNER)
    response = switch(member_client, {"current_team": elsewhere.pk})
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "current_team"
    assert member_client.get("/api/me/").json()["current_team"]["id"] == team.pk


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "current_team"),
        ({"current_team": "2"}, "current_team"),
        ({"current_team": True}, "current_team"),
        ({"current_team": 1, "team": 1}, "team"),
        ("[]", None),
        ({"current_team": 10**20}, "current_team"),
        ({"current_team": 0}, "current_team"),
    ],
)
def test_bad_switch_bodies_are_400(member_client, team, body, field):
    response = switch(member_client, body)
    assert response.status_code == 400
    assert response.json()["error"].get("field") == field
    assert member_client.get("/api/me/").json()["current_team"]["id"] == team.pk


def test_list_shows_one_team_s_conversations_when_asked(
    member_client, member, team, beta, make_conversation
):
    here = make_conversation(member, "Acme plans")
    there = make_conversation(member, "Beta plans")
    there.team = beta
    there.save(update_fields=["team"])
    everything = member_client.get(URL).json()["results"]
    assert {c["id"] for c in everything} == {here.pk, there.pk}
    in_beta = member_client.get(URL, {"team": beta.pk}).json()["results"]
    assert [c["id"] for c in in_beta] == [there.pk]
    found = member_client.get(URL, {"team": team.pk, "q": "plans"}).json()["results"]
    assert [c["id"] for c in found] == [here.pk]


def test_team_filter_pages_keep_the_team(member_client, member, beta, make_conversation):
    for n in range(22):
        chat = make_conversation(member, f"Beta {n}")
        chat.team = beta
        chat.save(update_fields=["team"])
    make_conversation(member, "Acme only")
    first = member_client.get(URL, {"team": beta.pk}).json()
    assert f"team={beta.pk}" in first["next"]
    second = member_client.get(first["next"]).json()
    assert len(first["results"]) + len(second["results"]) == 22
    assert second["next"] is None


@pytest.mark.parametrize("value", ["0", "x", "-1", "99999999999999999999"])
def test_bad_team_filter_is_400(member_client, value):
    response = member_client.get(URL, {"team": value})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "team"
