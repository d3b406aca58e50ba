import json

import pytest
from django.test import Client

from chatapp.accounts.models import UserSettings
from chatapp.teams import actions, crypto
from chatapp.teams.models import TeamPolicy, TeamProvider
from tests.conftest import client_for

SCOUT = "Llama-4-Scout-17B-16E-Instruct-FP8"
SMALL = "Llama-3.3-8B-Instruct"


def put(client, body, **extra):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.put("/api/settings/", data, content_type="application/json", **extra)


def test_models_lists_the_teams_allowed_models_and_default(member_client, team):
    TeamPolicy.objects.create(team=team, allowed_models=[SCOUT, SMALL], default_model=SMALL)
    data = member_client.get("/api/models/").json()
    assert [m["id"] for m in data["models"]] == [SCOUT, SMALL]
    assert data["default"] == SMALL


def test_models_default_follows_the_users_own_choice(member_client, member):
    UserSettings.objects.create(user=member, model=SCOUT)
    assert member_client.get("/api/models/").json()["default"] == SCOUT


@pytest.mark.parametrize(
    ("listed", "offered"),
    [
        (["llama3.1:8b", "qwen2.5:32b"], ["qwen2.5:32b", "llama3.1:8b"]),
        (["llama3.1:8b"], ["qwen2.5:32b", "llama3.1:8b"]),  # the default is always offered
    ],
)
def test_models_are_the_ones_the_operator_lists(member_client, settings, listed, offered):
    settings.LLAMA_API_PROTOCOL = "openai"
    settings.LLAMA_DEFAULT_MODEL = "qwen2.5:32b"
    settings.LLAMA_MODELS = listed
    data = member_client.get("/api/models/").json()
    assert [m["id"] for m in data["models"]] == offered
    assert data["default"] == "qwen2.5:32b"


def test_models_rejects_writes_and_anonymous(member_client):
    assert member_client.post("/api/models/").status_code == 405
    assert Client().get("/api/models/").status_code == 401


def test_settings_start_empty_with_effective_values(member_client, settings):
    data = member_client.get("/api/settings/").json()
    assert {k: data[k] for k in ("model", "temperature", "max_tokens", "top_p")} == dict.fromkeys(
        ("model", "temperature", "max_tokens", "top_p")
    )
    assert data["effective"]["model"] == settings.LLAMA_DEFAULT_MODEL


def test_settings_in_a_team_asked_for_not_the_sessions(member_client, member, team):
    """A chat page of another team than the session's current one prefills that team's."""
    TeamPolicy.objects.create(team=team, allowed_models=[SMALL], default_temperature=0.2)
    other = actions.create_team(member, "Side project")
    member_client.post(f"/teams/{other.pk}/switch/")
    assert member_client.get("/api/settings/").json()["effective"]["model"] != SMALL
    effective = member_client.get("/api/settings/", {"team": team.pk}).json()["effective"]
    assert (effective["model"], effective["temperature"]) == (SMALL, 0.2)


def test_settings_in_a_team_one_is_not_in_are_404(member_client, outsider):
    elsewhere = actions.create_team(outsider, "Elsewhere")
    response = member_client.get("/api/settings/", {"team": elsewhere.pk})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_put_saves_the_users_defaults(member_client, member):
    body = {"model": SCOUT, "temperature": 0.3, "max_tokens": 512, "top_p": None}
    response = put(member_client, body)
    assert response.status_code == 200
    data = response.json()
    assert data["model"] == SCOUT and data["temperature"] == 0.3 and data["top_p"] is None
    assert data["effective"]["max_tokens"] == 512
    stored = UserSettings.objects.get(user=member)
    assert (stored.model, stored.temperature, stored.max_tokens) == (SCOUT, 0.3, 512)
    assert member_client.get("/api/settings/").json()["model"] == SCOUT


def test_put_null_clears_back_to_the_defaults(member_client, member):
    UserSettings.objects.create(user=member, model=SCOUT, temperature=0.2)
    put(member_client, {"model": None, "temperature": None})
    stored = UserSettings.objects.get(user=member)
    assert (stored.model, stored.temperature) == ("", None)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"temperature": 7}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"model": "gpt-4"}, "model"),
        ({"colour": "blue"}, "colour"),
        ("[]", None),
        ("{oops", None),
    ],
)
def test_bad_settings_are_400_and_change_nothing(member_client, member, body, field):
    UserSettings.objects.create(user=member, temperature=0.4)
    response = put(member_client, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"]
    assert error.get("field") == field
    assert UserSettings.objects.get(user=member).temperature == 0.4


def test_max_tokens_are_checked_against_the_model_the_new_settings_choose(
    member_client, member, team
):
    """A team's own server: its own model may answer longer than a Llama model. Setting the
    model back to the team's default (a Llama model) with the old, longer max tokens is
    refused, as on the settings page, rather than stored and then ignored."""
    TeamProvider.objects.create(
        team=team, base_url="https://llm.example.com/v1", api_key_encrypted=crypto.encrypt("k")
    )
    TeamPolicy.objects.create(team=team, allowed_models=[SMALL, "local-big"], default_model=SMALL)
    UserSettings.objects.create(user=member, model="local-big", max_tokens=100_000)
    response = put(member_client, {"model": None, "max_tokens": 100_000})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "max_tokens"
    assert UserSettings.objects.get(user=member).model == "local-big"
    page = member_client.post("/settings/", {"model": "", "max_tokens": "100000"})
    assert "between 1 and 16384" in page.content.decode()


def test_a_model_the_team_does_not_allow_is_refused(member_client, member, team):
    TeamPolicy.objects.create(team=team, allowed_models=[SMALL])
    response = put(member_client, {"model": SCOUT})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_not_allowed"
    assert not UserSettings.objects.filter(user=member).exists()


def test_settings_wrong_method_anonymous_and_csrf(member, member_client):
    assert Client().get("/api/settings/").status_code == 401
    assert member_client.post("/api/settings/").status_code == 405
    logged_in = client_for(Client(enforce_csrf_checks=True), member)
    assert put(logged_in, {"temperature": 0.5}).status_code == 403
    assert not UserSettings.objects.filter(user=member).exists()
