"""How many system prompts, tool servers and JSON schemas one team keeps: each is listed on
its pages and read for every chat, so the site caps them (TEAM_MAX_* settings). One more is
refused, in the JSON API with its own code and on the page with a message, and nothing is
stored or audited; changing one the team has goes through."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from chatapp.teams.models import AuditEvent, Invitation, JsonSchema, SystemPrompt
from chatapp.tools.models import ToolServer

SCHEMA = {"type": "object"}


@pytest.fixture
def full_team(settings, team, owner):
    """Acme at each limit (two of everything), with the owner's current team set to it."""
    settings.TEAM_MAX_SYSTEM_PROMPTS = 2
    settings.TEAM_MAX_TOOL_SERVERS = 2
    settings.TEAM_MAX_JSON_SCHEMAS = 2
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    for n in (1, 2):
        SystemPrompt.objects.create(team=team, name=f"p{n}", content="Be brief.")
        ToolServer.objects.create(team=team, name=f"s{n}", url=f"https://t{n}.example.com/mcp")
        JsonSchema.objects.create(team=team, name=f"j{n}", schema=SCHEMA)
    return team


def post_json(client, url: str, body: dict):
    return client.post(url, json.dumps(body), content_type="application/json")


def counts(team) -> tuple[int, int, int, int]:
    return (
        team.system_prompts.count(),
        ToolServer.objects.filter(team=team).count(),
        team.json_schemas.count(),
        AuditEvent.objects.filter(team=team).count(),
    )


@pytest.mark.parametrize(
    ("url", "body", "code"),
    [
        ("/api/system-prompts/", {"name": "p3", "content": "x"}, "too_many_prompts"),
        (
            "/api/teams/{team}/tool-servers/",
            {"name": "s3", "url": "http://127.0.0.1:9/mcp"},
            "too_many_tool_servers",
        ),
        ("/api/teams/{team}/json-schemas/", {"name": "j3", "schema": SCHEMA}, "too_many_schemas"),
    ],
)
def test_one_more_is_refused_in_the_api_and_stores_nothing(
    owner_in_team, full_team, url, body, code
):
    before = counts(full_team)
    response = post_json(owner_in_team, url.format(team=full_team.pk), body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert "keeps at most 2" in error["message"] and "delete one" in error["message"]
    assert counts(full_team) == before


@pytest.mark.parametrize(
    ("page", "form"),
    [
        ("prompts", {"name": "p3", "content": "x", "answer_format": "text"}),
        ("tools", {"name": "s3", "url": "http://127.0.0.1:9/mcp", "timeout": "30"}),
        ("json-schemas", {"name": "j3", "schema": json.dumps(SCHEMA)}),
    ],
)
def test_one_more_is_refused_on_the_page_and_stores_nothing(owner_client, full_team, page, form):
    before = counts(full_team)
    response = owner_client.post(f"/teams/{full_team.pk}/{page}/", form)
    assert response.status_code == 400
    assert b"keeps at most 2" in response.content
    assert counts(full_team) == before


def test_a_team_at_its_limit_still_changes_what_it_has(owner_in_team, full_team):
    prompt = full_team.system_prompts.first()
    response = owner_in_team.patch(
        f"/api/system-prompts/{prompt.pk}/",
        json.dumps({"content": "Be kind."}),
        content_type="application/json",
    )
    assert response.status_code == 200
    schema = full_team.json_schemas.first()
    response = owner_in_team.patch(
        f"/api/teams/{full_team.pk}/json-schemas/{schema.pk}/",
        json.dumps({"name": "renamed"}),
        content_type="application/json",
    )
    assert response.status_code == 200


def test_after_deleting_one_another_can_be_added(owner_in_team, full_team):
    prompt = full_team.system_prompts.first()
    assert owner_in_team.delete(f"/api/system-prompts/{prompt.pk}/").status_code == 204
    response = post_json(owner_in_team, "/api/system-prompts/", {"name": "p3", "content": "x"})
    assert response.status_code == 201


def test_pending_invitations_past_the_limit_are_refused(settings, owner_client, team, owner):
    """Every pending invitation is listed on the members page: a team keeps at most
    TEAM_MAX_PENDING_INVITATIONS; used or expired ones do not count."""
    settings.TEAM_MAX_PENDING_INVITATIONS = 2
    expired = timezone.now() - timedelta(days=1)
    Invitation.objects.create(team=team, invited_by=owner)
    Invitation.objects.create(team=team, invited_by=owner, expires_at=expired)
    Invitation.objects.create(team=team, invited_by=owner, accepted_at=timezone.now())
    url = f"/teams/{team.pk}/invitations/"
    assert owner_client.post(url, {"role": "member", "email": ""}).status_code == 302
    before = (Invitation.objects.count(), AuditEvent.objects.count())
    response = owner_client.post(url, {"role": "member", "email": "new@example.com"})
    assert response.status_code == 400
    assert b"keeps at most 2 pending invitations" in response.content
    assert (Invitation.objects.count(), AuditEvent.objects.count()) == before
