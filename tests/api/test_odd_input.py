"""Odd input that used to answer 500: each is a 400 in the envelope and stores nothing.

NUL characters cannot be stored in PostgreSQL text, and lone surrogates cannot be encoded for
either database; both are refused before any query, on every database.
"""

import json

import pytest
from django.utils import timezone

from chatapp.api import server_error
from chatapp.chat.api import MAX_PAGE
from chatapp.chat.models import Conversation
from chatapp.teams.models import SystemPrompt

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


DEEP = "[" * 100_000 + "]" * 100_000  # json.loads gives up with a RecursionError


def test_json_nested_past_the_parser_is_400_and_changes_nothing(member_client, chat):
    response = member_client.patch(f"/api/conversations/{chat.pk}/", DEEP, "application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    chat.refresh_from_db()
    assert chat.title == "Tax questions"


@pytest.mark.parametrize("debug", [False, True])
def test_bodies_django_cannot_parse_are_400_in_the_envelope(member_client, chat, settings, debug):
    """With DEBUG on too (make run), where ninja would answer them with a traceback."""
    settings.DEBUG = debug
    no_boundary = member_client.post("/api/uploads/", b"x", content_type="multipart/form-data")
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    too_big = send(member_client, "patch", f"/api/conversations/{chat.pk}/", {"title": "x" * 2000})
    for response in (no_boundary, too_big):
        assert response.status_code == 400
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "invalid"
    chat.refresh_from_db()
    assert chat.title == "Tax questions"


@pytest.mark.parametrize("debug", [False, True])  # make run has DEBUG on
@pytest.mark.parametrize("path", ["/api/no-such-thing/", "/api/uploads/abc/", "/api/nothing"])
def test_unknown_api_urls_are_404_in_the_envelope(member_client, settings, path, debug):
    settings.DEBUG = debug
    response = member_client.get(path)
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "Not found: it does not exist or is not yours."}
    }


@pytest.mark.parametrize("debug", [False, True])
def test_an_api_url_without_its_slash_is_a_404_naming_it_not_a_redirect(
    member_client, settings, debug
):
    """A redirect would turn the POST into a GET; under DEBUG Django refuses it with a 500."""
    settings.DEBUG = debug
    response = send(member_client, "post", "/api/conversations", {"title": "Budget"})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "Not found: it does not exist or is not yours. This API's addresses end"
        " with a slash: /api/conversations/",
    }
    assert not Conversation.objects.exists()


@pytest.mark.parametrize("debug", [False, True])
def test_unknown_v1_urls_are_404_in_openai_s_envelope(member_client, settings, debug):
    settings.DEBUG = debug
    response = member_client.post("/v1/chat/completions/", {}, content_type="application/json")
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "unknown_url")
    assert error["message"].startswith("Invalid URL (POST /v1/chat/completions/)")


def test_unknown_pages_are_still_the_html_404(member_client):
    response = member_client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "<h1>Not found</h1>" in page and ">Back to your chats</a>" in page and 'href="/"' in page


def test_an_unexpected_error_is_json_under_the_api_and_a_page_elsewhere(rf):
    api = server_error(rf.get("/api/conversations/"))
    assert api.status_code == 500
    assert json.loads(api.content)["error"]["code"] == "internal_error"
    openai = server_error(rf.post("/v1/chat/completions"))
    assert json.loads(openai.content)["error"]["type"] == "server_error"
    page = server_error(rf.get("/c/1/"))
    assert page.status_code == 500 and b"Something went wrong" in page.content


@pytest.mark.parametrize("name", ["\u200b", "\u2060\u00ad", "\u3164"])
def test_a_prompt_or_key_name_with_nothing_to_see_is_400(owner_in_team, team, name):
    body = {"name": name, "content": "Write code."}
    assert_refused(send(owner_in_team, "post", "/api/system-prompts/", body), "name")
    assert not SystemPrompt.objects.exists()
    assert_refused(send(owner_in_team, "post", "/api/keys/", {"name": name}), "name")
