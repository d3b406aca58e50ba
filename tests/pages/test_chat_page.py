"""The chat page: `/` and `/c/<id>/`."""

import json

import pytest

from chatapp.chat.models import Conversation
from chatapp.core.middleware import CONTENT_SECURITY_POLICY
from chatapp.teams import actions
from chatapp.teams.models import Membership, Role, SystemPrompt, Team, TeamPolicy

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(member, team):
    return Conversation.objects.create(
        team=team, owner=member, title="Quarterly plan", model="Llama-3.3-70B-Instruct"
    )


def chat_config(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="chat-config" type="application/json">')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    return json.loads(body)


@pytest.mark.parametrize("path", ["/", "/c/1/"])
def test_anonymous_is_sent_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_home_renders_a_new_chat(member_client, team):
    response = member_client.get("/")
    assert response.status_code == 200
    assert chat_config(response)["conversationId"] is None
    assert b'id="composer-input"' in response.content
    assert team.name.encode() in response.content


def test_conversation_page_names_the_conversation(member_client, conversation):
    response = member_client.get(f"/c/{conversation.pk}/")
    assert response.status_code == 200
    assert chat_config(response)["conversationId"] == conversation.pk
    assert b"<title>Quarterly plan" in response.content
    assert b"Llama-3.3-70B-Instruct" in response.content


def test_outsider_gets_404_for_someone_elses_conversation(outsider_client, conversation):
    assert outsider_client.get(f"/c/{conversation.pk}/").status_code == 404


def test_missing_conversation_is_404(member_client):
    assert member_client.get("/c/999999/").status_code == 404


def test_chat_page_refuses_post(member_client, conversation):
    assert member_client.post("/").status_code == 405
    assert member_client.post(f"/c/{conversation.pk}/").status_code == 405


def test_team_prompts_are_offered_with_the_default_selected(member_client, team):
    SystemPrompt.objects.create(team=team, name="Reviewer", content="Review code.")
    default = SystemPrompt.objects.create(
        team=team, name="Helper", content="Be helpful.", is_default=True
    )
    response = member_client.get("/")
    prompts = chat_config(response)["systemPrompts"]
    assert [p["name"] for p in prompts] == ["Reviewer", "Helper"]
    assert "content" not in prompts[0]  # the picker needs names only
    assert f'<option value="{default.pk}" selected>Helper</option>'.encode() in response.content


def test_other_teams_prompts_are_not_offered(outsider_client, team):
    SystemPrompt.objects.create(team=team, name="Acme secret", content="x")
    response = outsider_client.get("/")
    assert chat_config(response)["systemPrompts"] == []
    assert b"Acme secret" not in response.content


def test_page_carries_csrf_token_and_logout_form(member_client):
    response = member_client.get("/")
    assert b'name="csrfmiddlewaretoken"' in response.content
    assert b'action="/accounts/logout/"' in response.content
    assert "csrftoken" in response.cookies


def test_page_has_strict_csp_and_no_inline_script_or_style(member_client, conversation):
    response = member_client.get(f"/c/{conversation.pk}/")
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    html = response.content.decode()
    assert "style=" not in html
    assert " onclick=" not in html and " onload=" not in html
    # Every script either loads a file or is inert JSON data.
    for chunk in html.split("<script")[1:]:
        tag = chunk[: chunk.index(">")]
        assert "src=" in tag or 'type="application/json"' in tag


def test_conversation_title_is_escaped(member_client, member, team):
    conversation = Conversation.objects.create(
        team=team, owner=member, title="<img src=x onerror=alert(1)>", model="m"
    )
    response = member_client.get(f"/c/{conversation.pk}/")
    assert b"<img src=x" not in response.content
    assert b"&lt;img src=x onerror=alert(1)&gt;" in response.content


def test_page_carries_the_teams_setting_ranges(member_client, team):
    TeamPolicy.objects.create(team=team, max_tokens_limit=500)
    limits = chat_config(member_client.get("/"))["limits"]
    assert limits["temperature"] == {"min": 0, "max": 1.0}
    assert limits["topP"] == {"min": 0, "max": 1}
    assert {m["maxTokens"] for m in limits["models"]} == {500}


def test_page_carries_the_upload_caps_and_which_models_see_images(member_client, settings):
    settings.UPLOAD_MAX_FILES_PER_MESSAGE = 3
    settings.UPLOAD_MAX_FILE_BYTES = 1000
    settings.UPLOAD_MAX_MESSAGE_BYTES = 2500
    settings.LLAMA_IMAGE_MODELS = ["Llama-4-Scout-17B-16E-Instruct-FP8"]
    uploads = chat_config(member_client.get("/"))["uploads"]
    assert uploads["maxFiles"] == 3
    assert uploads["maxFileBytes"] == 1000
    assert uploads["maxMessageBytes"] == 2500
    assert uploads["imageModels"] == ["Llama-4-Scout-17B-16E-Instruct-FP8"]
    assert {".png", ".pdf", ".md", ".csv", ".py"} <= set(uploads["accept"].split(","))


def test_a_locked_default_prompt_replaces_the_no_prompt_choice(member_client, team):
    SystemPrompt.objects.create(
        team=team, name="House rules", content="Be kind.", is_default=True, locked=True
    )
    html = member_client.get("/").content.decode()
    assert "No system prompt" not in html
    assert "Your team's prompt “House rules” applies" in html


def refused_answer(team, owner) -> Conversation:
    conversation = Conversation.objects.create(team=team, owner=owner, title="t", model="m")
    conversation.messages.create(role="assistant", status="error", error_code="auth_failed")
    return conversation


def test_team_admins_are_told_whose_key_was_refused(owner_client, owner, team):
    refused_answer(team, owner)
    html = owner_client.get("/").content.decode()
    assert "refused the site's key (<code>LLAMA_API_KEY</code>)" in html
    assert "give the team a provider key of its own" in html
    actions.set_provider(owner, team, base_url="https://9.9.9.8/v1", protocol="openai", api_key="k")
    assert "refused this team" not in owner_client.get("/").content.decode()  # a new key
    refused_answer(team, owner)
    html = owner_client.get("/").content.decode()
    assert "refused this team's key" in html and "LLAMA_API_KEY" not in html


def test_the_key_warning_names_the_server_that_refused_the_key(owner_client, owner, team, settings):
    settings.LLAMA_API_PROTOCOL = "openai"
    settings.LLAMA_API_BASE_URL = "http://10.0.0.5:8000/v1"
    refused_answer(team, owner)
    html = owner_client.get("/").content.decode()
    assert "The model server at 10.0.0.5 refused the site's key" in html
    assert "Llama API" not in html
    actions.set_provider(owner, team, base_url="https://9.9.9.8/v1", protocol="llama", api_key="k")
    refused_answer(team, owner)
    html = owner_client.get("/").content.decode()
    assert "The Llama API refused this team's key" in html


def test_a_team_admin_is_warned_without_a_link_to_the_owners_provider_page(
    client, admin_member, owner, team
):
    client.force_login(admin_member)
    refused_answer(team, owner)
    html = client.get("/").content.decode()
    assert "refused the site's key (<code>LLAMA_API_KEY</code>)" in html
    assert f"/teams/{team.pk}/provider/" not in html
    assert client.get(f"/teams/{team.pk}/provider/").status_code == 403
    actions.set_provider(owner, team, base_url="https://9.9.9.8/v1", protocol="openai", api_key="k")
    refused_answer(team, owner)
    html = client.get("/").content.decode()
    assert "refused this team's key" in html and f"/teams/{team.pk}/provider/" not in html


def test_the_key_warning_goes_once_an_answer_is_completed(owner_client, owner, member, team):
    refused_answer(team, owner)
    later = Conversation.objects.create(team=team, owner=member, title="t", model="m")
    later.messages.create(role="assistant", status="stopped", content="Hi")
    assert "refused the site" in owner_client.get("/").content.decode()  # stopped: not proof
    later.messages.create(role="assistant", status="complete", content="Hello")
    assert "refused the site" not in owner_client.get("/").content.decode()
    refused_answer(team, owner)  # refused again after that
    assert "refused the site" in owner_client.get("/").content.decode()


def test_members_are_not_shown_the_key_warning(member_client, member, team):
    refused_answer(team, member)
    assert "refused this team" not in member_client.get("/").content.decode()


def test_a_conversation_shows_in_its_own_team(member_client, member, team):
    """Opened by its address while the session is in another team, a conversation shows
    with its own team's list, prompts and suggestions, and the page's new chats go there."""
    beta = Team.objects.create(name="Beta")
    Membership.objects.create(team=beta, user=member, role=Role.MEMBER)
    SystemPrompt.objects.create(team=beta, name="Beta's prompt", content="Speak Beta.")
    TeamPolicy.objects.create(team=beta, starter_suggestions=["Plan the Beta launch"])
    there = Conversation.objects.create(team=beta, owner=member, title="Beta plans", model="m")
    config = chat_config(member_client.get(f"/c/{there.pk}/"))
    assert config["currentTeamId"] == beta.pk
    assert [prompt["name"] for prompt in config["systemPrompts"]] == ["Beta's prompt"]
    assert config["starters"] == ["Plan the Beta launch"]
    # The session's team is unchanged: a plain page shows it.
    assert chat_config(member_client.get("/"))["currentTeamId"] == team.pk


def test_a_conversation_of_a_team_one_left_shows_in_the_sessions_team(member_client, member, team):
    """Read only: none of the team's prompts or list (no longer the person's to see), and the
    page says why nothing more can be asked there (tests/browser/test_chat_tabs.py)."""
    beta = Team.objects.create(name="Beta")
    SystemPrompt.objects.create(team=beta, name="Beta's prompt", content="Speak Beta.")
    there = Conversation.objects.create(team=beta, owner=member, title="Old plans", model="m")
    response = member_client.get(f"/c/{there.pk}/")
    assert response.status_code == 200
    config = chat_config(response)
    assert config["currentTeamId"] == team.pk and config["teamIds"] == [team.pk]
    assert b"Beta's prompt" not in response.content
    page = response.content.decode()
    assert '<p class="former-team-notice" id="former-team-notice" role="note">' in page
    # In a team of theirs, the notice is there for the page to show, hidden.
    here = Conversation.objects.create(team=team, owner=member, title="New plans", model="m")
    page = member_client.get(f"/c/{here.pk}/").content.decode()
    assert '<p class="former-team-notice" id="former-team-notice" role="note" hidden>' in page


def test_the_conversation_search_takes_the_direction_of_what_is_typed(member_client):
    """An Arabic or Hebrew search reads right to left in the box, as the titles it finds do."""
    html = member_client.get("/").content.decode()
    start = html.index('id="conversation-search"')
    field = html[html.rindex("<input", 0, start) : html.index(">", start)]
    assert 'dir="auto"' in field


def temporary_notice(response) -> str:
    html = response.content.decode()
    start = html.index('id="temporary-notice"')
    return html[start : html.index("</p>", start)]


def test_the_temporary_chat_notice_says_a_legal_hold_keeps_it(member_client, member, team):
    """Under a hold, nothing of the team's is deleted, temporary chats included: the notice
    does not promise they go when left or after 24 hours."""
    assert "after 24 hours" in temporary_notice(member_client.get("/"))
    TeamPolicy.objects.create(team=team, legal_hold=True)
    temporary = Conversation.objects.create(team=team, owner=member, model="m", temporary=True)
    for path in ("/", f"/c/{temporary.pk}/"):
        notice = temporary_notice(member_client.get(path))
        assert "after 24 hours" not in notice and "deleted when you leave" not in notice
        assert "This team is under legal hold" in notice
        assert "kept until the hold is lifted" in notice
