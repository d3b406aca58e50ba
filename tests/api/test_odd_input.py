"""Odd input that used to answer 500: each is a 400 in the envelope and stores nothing.

NUL characters cannot be stored in PostgreSQL text, and lone surrogates cannot be encoded for
either database; both are refused before any query, on every database.
"""

import json

import pytest
from django.utils import timezone

from chatapp.chat.api import MAX_PAGE
from chatapp.teams.models import SystemPrompt
from chatapp.teams.services import SESSION_TEAM_KEY

NUL = "a\x00b"
SURROGATE = "a\ud800b"
ODD_TEXT = pytest.mark.parametrize("text", [NUL, SURROGATE], ids=["nul", "surrogate"])


def send(client, method: str, url: str, body: dict):
    # json.dumps writes a lone surrogate as the escape "\ud800", as a JSON client would.
    return client.generic(method.upper(), url, json.dumps(body), content_type="application/json")


def assert_refused(response, field: str) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid", field)
    assert error["message"]


@pytest.mark.parametrize("page", ["²", "١", "9223372036854775807", str(MAX_PAGE + 1), "1e3"])
def test_odd_page_numbers_are_400(member_client, page):
    assert_refused(member_client.get("/api/conversations/", {"page": page}), "page")


def test_the_last_page_number_allowed_is_an_empty_page(member_client, chat):
    response = member_client.get("/api/conversations/", {"page": MAX_PAGE})
    assert response.json() == {"results": [], "next": None}


def test_a_nul_in_the_search_is_400(member_client, chat):
    assert_refused(member_client.get("/api/conversations/", {"q": NUL}), "q")


@ODD_TEXT
def test_odd_titles_are_400_and_change_nothing(member_client, chat, text):
    response = send(member_client, "patch", f"/api/conversations/{chat.pk}/", {"title": text})
    assert_refused(response, "title")
    chat.refresh_from_db()
    assert chat.title == "Tax questions"


@pytest.fixture
def owner_in_team(owner_client, team):
    session = owner_client.session
    session[SESSION_TEAM_KEY] = team.pk
    session.save()
    return owner_client


@ODD_TEXT
@pytest.mark.parametrize("field", ["name", "content"])
def test_odd_prompt_text_is_400_and_stores_nothing(owner_in_team, team, text, field):
    body = {"name": "Coder", "content": "Write code.", field: text}
    assert_refused(send(owner_in_team, "post", "/api/system-prompts/", body), field)
    assert not SystemPrompt.objects.exists()
    prompt = SystemPrompt.objects.create(team=team, name="Helper", content="Be helpful.")
    response = send(owner_in_team, "patch", f"/api/system-prompts/{prompt.pk}/", {field: text})
    assert_refused(response, field)
    prompt.refresh_from_db()
    assert (prompt.name, prompt.content, prompt.version) == ("Helper", "Be helpful.", 1)


@ODD_TEXT
def test_odd_model_names_in_settings_and_policy_are_400(owner_client, team, text):
    assert_refused(send(owner_client, "put", "/api/settings/", {"model": text}), "model")
    response = send(owner_client, "patch", f"/api/teams/{team.pk}/policy/", {"default_model": text})
    assert_refused(response, "default_model")


def test_the_usage_page_for_a_month_past_the_calendar_shows_this_month(owner_client, team):
    """9999-12 has no next month to end the report: handled like any other unreadable month."""
    response = owner_client.get(f"/teams/{team.pk}/usage/", {"month": "9999-12"})
    assert response.status_code == 200
    assert response.context["report"].month == timezone.now().date().replace(day=1)
