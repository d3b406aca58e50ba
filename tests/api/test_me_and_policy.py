"""`GET /api/me/` and `GET|PATCH /api/teams/<id>/policy/`."""

import json
import threading

import pytest
from django.db import connection, transaction
from django.test import Client

from chatapp.core.locking import lock_rows
from chatapp.teams import actions, policy
from chatapp.teams.models import AuditEvent, Membership, Role, Team, TeamPolicy
from chatapp.teams.services import SESSION_TEAM_KEY
from tests.conftest import client_for
from tests.databases import uses_postgres, wait_for_lock_waiters

SCOUT = "Llama-4-Scout-17B-16E-Instruct-FP8"
SMALL = "Llama-3.3-8B-Instruct"


def policy_url(team) -> str:
    return f"/api/teams/{team.pk}/policy/"


def patch(client, url: str, body) -> object:
    data = body if isinstance(body, str) else json.dumps(body)
    return client.patch(url, data, content_type="application/json")


# --- /api/me/ ------------------------------------------------------------------------------


def test_me_names_the_user_the_current_team_and_every_team(owner_client, owner, team):
    other = Team.objects.create(name="Beta")
    Membership.objects.create(team=other, user=owner, role=Role.MEMBER)
    session = owner_client.session
    session[SESSION_TEAM_KEY] = other.pk
    session.save()
    assert owner_client.get("/api/me/").json() == {
        "id": owner.pk,
        "username": "olivia",
        "is_site_admin": False,
        "current_team": {"id": other.pk, "name": "Beta", "role": "member"},
        "teams": [
            {"id": team.pk, "name": "Acme", "role": "owner"},
            {"id": other.pk, "name": "Beta", "role": "member"},
        ],
    }


def test_me_for_the_site_admin_without_a_team_gives_a_personal_team(site_admin):
    data = client_for(Client(), site_admin).get("/api/me/").json()
    assert data["is_site_admin"] is True
    personal = Team.objects.get(personal_owner=site_admin)
    assert data["current_team"] == {"id": personal.pk, "name": personal.name, "role": "owner"}
    assert data["teams"] == [data["current_team"]]


def test_me_is_401_for_anonymous_and_405_for_writes(member_client):
    response = Client().get("/api/me/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert member_client.post("/api/me/").status_code == 405


# --- /api/teams/<id>/policy/ ---------------------------------------------------------------


def test_owner_reads_the_policy(owner_client, team):
    TeamPolicy.objects.create(
        team=team, allowed_models=[SCOUT, SMALL], default_model=SMALL, monthly_token_budget=900
    )
    assert owner_client.get(policy_url(team)).json() == {
        "allowed_models": [SCOUT, SMALL],
        "default_model": SMALL,
        "default_temperature": None,
        "default_top_p": None,
        "default_max_tokens": None,
        "max_tokens_limit": None,
        "monthly_token_budget": 900,
        "member_monthly_token_budget": None,
        "rate_limit_per_minute": None,
        "safety_input": "off",
        "safety_output": "off",
        "safety_categories": [],
        "safety_on_error": "fail_open",
        "data_card": "off",
        "data_iban": "off",
        "data_email": "off",
        "data_phone": "off",
        "data_api_key": "off",
        "data_private_key": "off",
        "data_patterns": [],
        "retention_days": None,
        "legal_hold": False,
    }


def test_a_team_without_a_policy_reads_as_the_sites_choice(owner_client, team):
    data = owner_client.get(policy_url(team)).json()
    assert data["allowed_models"] == [] and data["default_model"] is None


@pytest.fixture
def admin_client(admin_member):
    return client_for(Client(), admin_member)


def test_admin_patches_the_policy_and_it_is_audited_like_the_page(admin_client, team):
    TeamPolicy.objects.create(team=team, rate_limit_per_minute=5)
    body = {"allowed_models": [SMALL], "default_model": SMALL, "default_temperature": 0.2}
    response = patch(admin_client, policy_url(team), body)
    assert response.status_code == 200
    data = response.json()
    assert (data["allowed_models"], data["default_model"]) == ([SMALL], SMALL)
    assert data["rate_limit_per_minute"] == 5  # left out: kept
    stored = TeamPolicy.objects.get(team=team)
    assert (stored.default_temperature, stored.rate_limit_per_minute) == (0.2, 5)
    event = AuditEvent.objects.get(action="policy.update")
    assert set(event.details["changes"]) == {
        "allowed_models",
        "default_model",
        "default_temperature",
    }


@pytest.mark.skipif(not uses_postgres(), reason="SQLite already queues every writer")
@pytest.mark.django_db(transaction=True)
def test_two_changes_at_once_keep_both(owner, admin_member, team):
    """Two admins change two fields of the policy at the same moment: neither change saves the
    other's field back to what it read before."""
    TeamPolicy.objects.create(team=team, rate_limit_per_minute=5)
    answers = []

    def change_the_budget_in_another_tab():
        try:
            tab = client_for(Client(), admin_member)
            answers.append(patch(tab, policy_url(team), {"monthly_token_budget": 1000}))
        finally:
            connection.close()

    tab = threading.Thread(target=change_the_budget_in_another_tab)
    with transaction.atomic():  # the first change, saving as set_policy does
        lock_rows(TeamPolicy.objects.filter(team=team))
        TeamPolicy.objects.filter(team=team).update(rate_limit_per_minute=7)
        tab.start()
        wait_for_lock_waiters()  # the other change has reached the policy
    tab.join()
    assert [answer.status_code for answer in answers] == [200]
    assert answers[0].json()["rate_limit_per_minute"] == 7
    stored = TeamPolicy.objects.get(team=team)
    assert (stored.rate_limit_per_minute, stored.monthly_token_budget) == (7, 1000)


def test_a_patch_with_an_etag_read_before_another_change_is_412(owner_client, admin_client, team):
    """If-Match is optional, as on prompts: without it the field-by-field merge above stands;
    with the ETag of a read made before another admin's change, nothing is saved."""
    TeamPolicy.objects.create(team=team, rate_limit_per_minute=5)
    read = owner_client.get(policy_url(team))
    tag = read["ETag"]
    adams = patch(admin_client, policy_url(team), {"rate_limit_per_minute": 7})
    assert adams.status_code == 200 and adams["ETag"] != tag
    assert owner_client.get(policy_url(team))["ETag"] == adams["ETag"]
    body = json.dumps({"monthly_token_budget": 1000})
    for stale in (tag, f"W/{adams['ETag']}"):
        refused = owner_client.patch(
            policy_url(team), body, content_type="application/json", headers={"If-Match": stale}
        )
        assert refused.status_code == 412
        assert refused.json()["error"]["code"] == "precondition_failed"
    stored = TeamPolicy.objects.get(team=team)
    assert (stored.rate_limit_per_minute, stored.monthly_token_budget) == (7, None)
    for current in (adams["ETag"], "*"):
        saved = owner_client.patch(
            policy_url(team), body, content_type="application/json", headers={"If-Match": current}
        )
        assert saved.status_code == 200 and saved.json()["monthly_token_budget"] == 1000
        assert saved["ETag"] == owner_client.get(policy_url(team))["ETag"]
    assert TeamPolicy.objects.get(team=team).rate_limit_per_minute == 7


def test_null_clears_a_field(owner_client, team):
    TeamPolicy.objects.create(team=team, default_model=SMALL, monthly_token_budget=10)
    response = patch(owner_client, policy_url(team), {"default_model": None})
    assert response.json()["default_model"] is None
    stored = TeamPolicy.objects.get(team=team)
    assert (stored.default_model, stored.monthly_token_budget) == ("", 10)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"default_temperature": 1.5}, "default_temperature"),  # the native API: 0 to 1
        ({"default_temperature": -1}, "default_temperature"),
        ({"default_top_p": 2}, "default_top_p"),
        ({"default_max_tokens": 0}, "default_max_tokens"),
        ({"default_max_tokens": 600, "max_tokens_limit": 500}, "default_max_tokens"),
        ({"allowed_models": ["gpt-4"]}, "allowed_models"),
        ({"allowed_models": [SMALL], "default_model": SCOUT}, "default_model"),
        ({"monthly_token_budget": 0}, "monthly_token_budget"),
        ({"rate_limit_per_minute": "3"}, "rate_limit_per_minute"),
        ({"rate_limit_per_minute": 2.5}, "rate_limit_per_minute"),
        ({"allowed_models": SMALL}, "allowed_models"),
        ({"allowed_models": [5]}, "allowed_models"),  # an item is named by its list
        ({"allowed_models": ["\ud800"]}, "allowed_models"),
        ({"safety_categories": [7]}, "safety_categories"),
        ({"data_patterns": [{"name": "X", "pattern": 5, "action": "block"}]}, "data_patterns"),
        ({"safety": "off"}, "safety"),
        ("[]", None),
        ("{oops", None),
    ],
)
def test_bad_policies_are_400_and_change_nothing(owner_client, team, body, field):
    TeamPolicy.objects.create(team=team, default_temperature=0.4)
    response = patch(owner_client, policy_url(team), body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["message"]
    assert error.get("field") == field
    stored = TeamPolicy.objects.get(team=team)
    assert (stored.default_temperature, stored.allowed_models) == (0.4, [])
    assert not AuditEvent.objects.filter(action="policy.update").exists()


def test_an_allow_list_takes_only_models_the_operator_lists(owner_client, team, settings):
    settings.LLAMA_DEFAULT_MODEL = "qwen2.5:32b"
    settings.LLAMA_MODELS = ["qwen2.5:32b", "llama3.1:8b"]
    response = patch(owner_client, policy_url(team), {"allowed_models": [SCOUT]})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "allowed_models"
    assert not TeamPolicy.objects.filter(team=team).exists()
    body = {"allowed_models": ["llama3.1:8b"], "default_model": "llama3.1:8b"}
    assert patch(owner_client, policy_url(team), body).json()["allowed_models"] == ["llama3.1:8b"]


def test_a_team_server_may_name_its_own_models(owner_client, owner, team):
    actions.set_provider(
        owner, team, base_url="https://9.9.9.8/v1", protocol="openai", api_key="k-123"
    )
    body = {"allowed_models": ["qwen-7b", "mistral"], "default_temperature": 1.5}
    response = patch(owner_client, policy_url(team), body)
    assert response.status_code == 200
    assert TeamPolicy.objects.get(team=team).allowed_models == ["qwen-7b", "mistral"]


def test_a_model_named_twice_is_allowed_once(owner_client, owner, team):
    body = {"allowed_models": [SMALL, SCOUT, SMALL]}
    assert patch(owner_client, policy_url(team), body).json()["allowed_models"] == [SMALL, SCOUT]
    actions.set_provider(
        owner, team, base_url="https://9.9.9.8/v1", protocol="openai", api_key="k-123"
    )
    body = {"allowed_models": ["qwen-7b", "mistral", "qwen-7b"]}
    assert patch(owner_client, policy_url(team), body).json()["allowed_models"] == [
        "qwen-7b",
        "mistral",
    ]


def test_a_list_saved_with_a_model_twice_offers_it_once(team):
    TeamPolicy.objects.create(team=team, allowed_models=[SMALL, SCOUT, SMALL])
    assert policy.allowed_models(team) == [SMALL, SCOUT]


@pytest.mark.parametrize("model", ["qwen\nmistral", "qwen\u2028mistral", "qwen\u0001", "qwen 7b"])
def test_a_model_id_with_a_line_break_or_control_character_is_400(owner_client, owner, team, model):
    actions.set_provider(
        owner, team, base_url="https://9.9.9.8/v1", protocol="openai", api_key="k-123"
    )
    response = patch(owner_client, policy_url(team), {"allowed_models": [model]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "allowed_models" and "model id" in error["message"]
    assert not TeamPolicy.objects.filter(team=team).exists()


def test_members_get_403_and_change_nothing(member_client, team):
    assert member_client.get(policy_url(team)).status_code == 403
    response = patch(member_client, policy_url(team), {"monthly_token_budget": 1})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert not TeamPolicy.objects.filter(team=team).exists()


def test_outsiders_get_404_whatever_the_body(outsider_client, team):
    assert outsider_client.get(policy_url(team)).status_code == 404
    for body in ({"monthly_token_budget": 1}, {"nonsense": True}, "not json"):
        assert patch(outsider_client, policy_url(team), body).status_code == 404
    assert not TeamPolicy.objects.filter(team=team).exists()


def test_policy_writes_need_the_csrf_token(owner, team):
    client = client_for(Client(enforce_csrf_checks=True), owner)
    response = patch(client, policy_url(team), {"monthly_token_budget": 1})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    client.get("/")
    token = client.cookies["csrftoken"].value
    response = client.patch(
        policy_url(team),
        json.dumps({"monthly_token_budget": 1}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 200
    assert TeamPolicy.objects.get(team=team).monthly_token_budget == 1
