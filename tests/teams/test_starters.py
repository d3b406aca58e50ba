"""Starter suggestions: team admins set them beside the prompts; an empty chat offers them."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from chatapp.teams.models import AuditEvent, TeamPolicy

pytestmark = pytest.mark.django_db


def starters_url(team) -> str:
    return reverse("teams:starters", args=[team.pk])


def chat_config(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="chat-config" type="application/json">')
    return json.loads(html[html.index(">", start) + 1 : html.index("</script>", start)])


def test_owner_sets_suggestions_and_the_chat_page_offers_them(owner_client, team, member):
    text = "Summarise a document\n\n  Draft an e-mail  \nSummarise a document\n"
    response = owner_client.post(starters_url(team), {"suggestions": text})
    assert response.status_code == 302
    stored = TeamPolicy.objects.get(team=team).starter_suggestions
    assert stored == ["Summarise a document", "Draft an e-mail"]
    assert AuditEvent.objects.filter(team=team, summary__contains="starter suggestions").exists()
    page = owner_client.get(reverse("teams:prompts", args=[team.pk])).content.decode()
    assert "Summarise a document\nDraft an e-mail</textarea>" in page
    member_client = Client()
    member_client.force_login(member)
    assert chat_config(member_client.get("/"))["starters"] == stored


def test_admin_sets_suggestions(admin_client, team):
    assert admin_client.post(starters_url(team), {"suggestions": "Plan a trip"}).status_code == 302
    assert TeamPolicy.objects.get(team=team).starter_suggestions == ["Plan a trip"]


@pytest.mark.parametrize(
    "text, error",
    [
        ("\n".join(f"Question {n}" for n in range(5)), "At most 4 suggestions"),
        ("x" * 201, "under 200 characters"),
    ],
)
def test_bad_suggestions_are_form_errors_and_change_nothing(owner_client, team, text, error):
    response = owner_client.post(starters_url(team), {"suggestions": text})
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not TeamPolicy.objects.filter(team=team).exclude(starter_suggestions=[]).exists()


def test_members_cannot_set_suggestions(member_client, team):
    assert member_client.post(starters_url(team), {"suggestions": "Hi"}).status_code == 403
    assert not TeamPolicy.objects.filter(team=team).exists()


def test_outsiders_get_404(outsider_client, team):
    assert outsider_client.post(starters_url(team), {"suggestions": "Hi"}).status_code == 404


def test_only_post(owner_client, team):
    assert owner_client.get(starters_url(team)).status_code == 405


def test_no_suggestions_by_default(member_client):
    assert chat_config(member_client.get("/"))["starters"] == []
