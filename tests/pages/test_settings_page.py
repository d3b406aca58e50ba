"""The settings page: model, temperature, max tokens and top_p within the team's policy."""

import re

import pytest
from django.test import Client

from chatapp.accounts.models import UserSettings
from chatapp.identity.models import OIDCIdentity
from chatapp.teams import policy
from chatapp.teams.models import TeamPolicy

pytestmark = pytest.mark.django_db

VALID = {
    "model": "Llama-3.3-70B-Instruct",
    "temperature": "0.3",
    "max_tokens": "1024",
    "top_p": "0.8",
}


def test_anonymous_is_sent_to_login(client):
    response = client.get("/settings/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/settings/"


def test_get_shows_the_team_models_and_csrf(member_client, team):
    response = member_client.get("/settings/")
    assert response.status_code == 200
    for model in policy.allowed_models(team):
        assert f'<option value="{model}"'.encode() in response.content
    assert b'name="csrfmiddlewaretoken"' in response.content


def test_valid_post_saves_and_redirects(member_client, member):
    response = member_client.post("/settings/", VALID)
    assert response.status_code == 302
    assert response["Location"] == "/settings/"
    stored = UserSettings.objects.get(user=member)
    assert (stored.model, stored.temperature, stored.max_tokens, stored.top_p) == (
        "Llama-3.3-70B-Instruct",
        0.3,
        1024,
        0.8,
    )
    page = member_client.get("/settings/")
    assert b"Settings saved." in page.content
    assert b'value="0.3"' in page.content


def test_blank_fields_fall_back_to_the_team_default(member_client, member):
    UserSettings.objects.create(user=member, model="Llama-3.3-70B-Instruct", temperature=0.2)
    response = member_client.post("/settings/", {"model": "", "temperature": ""})
    assert response.status_code == 302
    stored = UserSettings.objects.get(user=member)
    assert (stored.model, stored.temperature, stored.max_tokens) == ("", None, None)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model", "gpt-4", "Select a valid choice"),
        ("temperature", "7", "Temperature must be a number from 0 to"),
        ("temperature", "warm", "Enter a number."),
        ("temperature", "nan", "Enter a number."),
        ("max_tokens", "0", "Max tokens must be a whole number between 1 and"),
        ("max_tokens", "1.5", "Enter a whole number."),
        ("top_p", "1.5", "Top p must be a number from 0 to 1"),
        ("top_p", "-0.1", "Top p must be a number from 0 to 1"),
    ],
)
def test_bad_value_is_refused_with_a_clear_error_and_nothing_saved(
    member_client, member, field, value, message
):
    response = member_client.post("/settings/", {**VALID, field: value})
    assert response.status_code == 200
    assert message.encode() in response.content
    assert b'class="field has-error"' in response.content
    assert not UserSettings.objects.filter(user=member).exists()


def test_every_bad_field_is_named(member_client):
    response = member_client.post("/settings/", {"temperature": "9", "top_p": "2"})
    assert response.content.count(b'class="field has-error"') == 2


def test_only_models_the_team_allows_are_offered_and_accepted(member_client, member, team):
    TeamPolicy.objects.update_or_create(
        team=team, defaults={"allowed_models": ["Llama-3.3-8B-Instruct"]}
    )
    page = member_client.get("/settings/")
    assert b'<option value="Llama-3.3-8B-Instruct"' in page.content
    assert b'<option value="Llama-3.3-70B-Instruct"' not in page.content
    response = member_client.post("/settings/", {"model": "Llama-3.3-70B-Instruct"})
    assert response.status_code == 200
    assert not UserSettings.objects.filter(user=member).exists()


def test_the_picker_offers_the_models_the_operator_lists(member_client, member, settings):
    """A site on its own vLLM or Ollama server offers its models, not the Llama API's."""
    settings.LLAMA_API_PROTOCOL = "openai"
    settings.LLAMA_DEFAULT_MODEL = "qwen2.5:32b"
    settings.LLAMA_MODELS = ["llama3.1:8b", "qwen2.5:32b"]
    page = member_client.get("/settings/").content.decode()
    offered = re.findall(r'<option value="([^"]+)"', page)
    assert offered == ["qwen2.5:32b", "llama3.1:8b"]  # the default first
    assert member_client.post("/settings/", {"model": "Llama-3.3-70B-Instruct"}).status_code == 200
    assert not UserSettings.objects.filter(user=member).exists()
    assert member_client.post("/settings/", {"model": "llama3.1:8b"}).status_code == 302
    assert UserSettings.objects.get(user=member).model == "llama3.1:8b"


def test_a_saved_model_the_team_no_longer_offers_is_shown_and_not_dropped_unasked(
    member_client, member, team
):
    """Saved while the team offered it (or in another of the member's teams): the page says
    it is not used here, and saving the page as shown refuses it instead of clearing it."""
    UserSettings.objects.create(user=member, model="Llama-3.3-70B-Instruct", temperature=0.2)
    TeamPolicy.objects.create(team=team, allowed_models=["Llama-3.3-8B-Instruct"])
    page = member_client.get("/settings/").content.decode()
    assert re.search(r'<option value="Llama-3.3-70B-Instruct" selected>[^<]*not offered', page)
    shown = {"model": "Llama-3.3-70B-Instruct", "temperature": "0.5"}
    response = member_client.post("/settings/", shown)
    assert response.status_code == 200
    assert "Llama-3.3-70B-Instruct" in response.content.decode()
    assert b'class="field has-error"' in response.content
    stored = UserSettings.objects.get(user=member)
    assert (stored.model, stored.temperature) == ("Llama-3.3-70B-Instruct", 0.2)


def test_saved_values_the_team_no_longer_allows_say_what_is_used_instead(
    member_client, member, team, settings
):
    """The team lowered its ceiling (or its provider's temperature range) after the member
    saved their defaults: the page shows what they saved and says it is not what applies."""
    settings.LLAMA_API_PROTOCOL = "llama"  # temperatures from 0 to 1
    TeamPolicy.objects.create(team=team, max_tokens_limit=500, default_max_tokens=400)
    UserSettings.objects.create(user=member, max_tokens=4000, temperature=1.5, top_p=0.5)
    page = member_client.get("/settings/").content.decode()
    assert 'name="max_tokens" value="4000"' in page
    assert "Your saved 4000 is not allowed in this team: 400 is used." in page
    assert "Your saved 1.5 is not allowed in this team: 0.6 is used." in page
    assert "Your saved 0.5" not in page  # allowed, and used


def test_team_token_ceiling_is_enforced(member_client, member, team):
    TeamPolicy.objects.update_or_create(team=team, defaults={"max_tokens_limit": 500})
    response = member_client.post("/settings/", {"max_tokens": "501"})
    assert b"between 1 and 500" in response.content
    assert member_client.post("/settings/", {"max_tokens": "500"}).status_code == 302
    assert UserSettings.objects.get(user=member).max_tokens == 500


def test_a_blank_field_shows_the_value_the_team_will_use(member_client, team):
    """The site's default of 2048 tokens is over this team's ceiling: 500 is what applies."""
    TeamPolicy.objects.update_or_create(team=team, defaults={"max_tokens_limit": 500})
    page = member_client.get("/settings/").content.decode()
    assert 'placeholder="Default: 500"' in page
    assert "1 to 500 in this team" in page


def test_post_without_csrf_token_is_refused(client, member):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(member)
    assert strict.post("/settings/", VALID).status_code == 403
    assert not UserSettings.objects.filter(user=member).exists()


def test_wrong_method_is_refused(member_client):
    assert member_client.put("/settings/").status_code == 405


def test_reset_clears_own_defaults_so_the_team_defaults_apply(member_client, member):
    UserSettings.objects.create(
        user=member, model="Llama-3.3-70B-Instruct", temperature=0.2, max_tokens=99, top_p=0.5
    )
    page = member_client.get("/settings/")
    assert b'name="reset"' in page.content
    response = member_client.post("/settings/", {"reset": "1", "temperature": "0.9"})
    assert response.status_code == 302
    assert response["Location"] == "/settings/"
    stored = UserSettings.objects.get(user=member)
    assert (stored.model, stored.temperature, stored.max_tokens, stored.top_p) == (
        "",
        None,
        None,
        None,
    )
    assert b"reset to the team defaults" in member_client.get("/settings/").content


def test_reset_without_csrf_token_is_refused(member):
    UserSettings.objects.create(user=member, temperature=0.2)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(member)
    assert strict.post("/settings/", {"reset": "1"}).status_code == 403
    assert UserSettings.objects.get(user=member).temperature == 0.2


@pytest.mark.parametrize("path", ["/settings/", "/settings/shares/", "/settings/admin-access/"])
def test_the_settings_pages_mark_settings_as_the_current_section(member_client, path):
    page = member_client.get(path).content.decode()
    assert '<a href="/settings/" aria-current="page">Settings</a>' in page
    assert page.count('aria-current="page"') == 1


def test_a_new_key_keeps_settings_marked_as_the_current_section(member_client):
    page = member_client.post("/settings/keys/", {"key-name": "laptop"}).content.decode()
    assert "ltc_" in page
    assert '<a href="/settings/" aria-current="page">Settings</a>' in page


def test_an_account_without_a_password_is_told_how_it_signs_in(client, member):
    member.set_unusable_password()  # as import_conversations --create-missing makes them
    member.save()
    client.force_login(member)
    page = client.get("/settings/").content.decode()
    assert "no password yet: a site admin can set one" in page
    assert "single sign-on" not in page
    OIDCIdentity.objects.create(user=member, issuer="https://sso.example.com", subject="max")
    page = client.get("/settings/").content.decode()
    assert "You sign in through your organisation's single sign-on" in page
    assert "Change your password" not in page
