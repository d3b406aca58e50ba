"""The system prompts JSON API, as DESIGN.md describes it."""

import json

import pytest
from django.test import Client

from chatapp.teams import api as prompts_api
from chatapp.teams.models import (
    AuditEvent,
    JsonSchema,
    Membership,
    ResponseFormat,
    Role,
    SystemPrompt,
    Team,
)
from chatapp.teams.services import SESSION_TEAM_KEY

LIST = "/api/system-prompts/"


def detail(prompt) -> str:
    return f"/api/system-prompts/{prompt.pk}/"


def send(client, method: str, url: str, body) -> object:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return getattr(client, method)(url, data, content_type="application/json")


@pytest.fixture
def prompt(team):
    return SystemPrompt.objects.create(team=team, name="Helper", content="Be helpful.")


@pytest.fixture
def in_team(client, team):
    """Put the logged-in client's current team to the Acme team."""

    def use(client):
        session = client.session
        session[SESSION_TEAM_KEY] = team.pk
        session.save()
        return client

    return use


def test_members_list_their_current_teams_prompts(member_client, in_team, prompt):
    response = in_team(member_client).get(LIST)
    assert response.status_code == 200
    assert response.json() == {
        "results": [
            {
                "id": prompt.pk,
                "name": "Helper",
                "content": "Be helpful.",
                "is_default": False,
                "locked": False,
                "version": 1,
            }
        ],
        "can_manage": False,
    }


def test_owner_creates_a_prompt(owner_client, in_team, team):
    body = {"name": "Coder", "content": "Write code.", "is_default": True, "locked": True}
    response = send(in_team(owner_client), "post", LIST, body)
    assert response.status_code == 201
    created = SystemPrompt.objects.get(name="Coder")
    assert response.json() == {"id": created.pk, "version": 1, **body}
    assert created.team == team


def test_a_user_without_a_team_gets_a_personal_team_they_own(outsider_client, outsider):
    response = send(outsider_client, "post", LIST, {"name": "Mine", "content": "Hi."})
    assert response.status_code == 201
    team = Team.objects.get(personal_owner=outsider)
    assert SystemPrompt.objects.get(name="Mine").team == team
    assert Membership.objects.get(team=team, user=outsider).role == Role.OWNER


def test_member_writes_are_403_and_change_nothing(member_client, in_team, prompt):
    client = in_team(member_client)
    assert send(client, "post", LIST, {"name": "X", "content": "Y"}).status_code == 403
    assert send(client, "patch", detail(prompt), {"content": "Hacked"}).status_code == 403
    assert client.delete(detail(prompt)).status_code == 403
    prompt.refresh_from_db()
    assert prompt.content == "Be helpful." and SystemPrompt.objects.count() == 1
    assert send(client, "post", LIST, {"name": "X", "content": "Y"}).json()["error"]["code"] == (
        "forbidden"
    )


def test_admin_patches_a_prompt_and_the_version_is_kept(admin_client, in_team, prompt):
    response = send(in_team(admin_client), "patch", detail(prompt), {"content": "Be kind."})
    assert response.status_code == 200
    assert response.json()["version"] == 2 and response.json()["content"] == "Be kind."
    assert prompt.versions.get().content == "Be helpful."


def test_a_patch_keeps_the_prompts_answer_format(admin_client, in_team, team, prompt):
    schema = JsonSchema.objects.create(team=team, name="ticket", schema={"type": "object"})
    prompt.response_format, prompt.json_schema = ResponseFormat.JSON_SCHEMA, schema
    prompt.save()
    response = send(in_team(admin_client), "patch", detail(prompt), {"locked": True})
    assert response.status_code == 200
    prompt.refresh_from_db()
    assert prompt.locked
    assert (prompt.response_format, prompt.json_schema) == (ResponseFormat.JSON_SCHEMA, schema)


def test_owner_deletes_a_prompt(owner_client, in_team, prompt):
    response = in_team(owner_client).delete(detail(prompt))
    assert response.status_code == 204
    assert not SystemPrompt.objects.exists()
    assert AuditEvent.objects.filter(action="prompt.delete").exists()


def test_outsiders_get_404_for_a_prompt(outsider_client, prompt):
    assert outsider_client.get(detail(prompt)).status_code == 404
    assert send(outsider_client, "patch", detail(prompt), {"content": "x"}).status_code == 404
    assert outsider_client.delete(detail(prompt)).status_code == 404
    assert outsider_client.delete(detail(prompt)).json()["error"]["code"] == "not_found"
    assert SystemPrompt.objects.get(pk=prompt.pk).content == "Be helpful."


def test_a_prompt_outside_the_current_team_is_404(owner_client, owner, prompt):
    other = Team.objects.create(name="Other")
    Membership.objects.create(team=other, user=owner, role=Role.OWNER)
    session = owner_client.session
    session[SESSION_TEAM_KEY] = other.pk
    session.save()
    assert owner_client.delete(detail(prompt)).status_code == 404
    assert SystemPrompt.objects.filter(pk=prompt.pk).exists()


def test_the_list_never_shows_other_teams_prompts(outsider_client, prompt):
    assert outsider_client.get(LIST).json()["results"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not json", None),
        ([], None),
        ({"content": "x"}, "name"),
        ({"name": "x"}, "content"),
        ({"name": "  ", "content": "x"}, "name"),
        ({"name": 3, "content": "x"}, "name"),
        ({"name": "x", "content": "y", "locked": "yes"}, "locked"),
        ({"name": "x", "content": "y", "is_default": 1}, "is_default"),
        ({"name": "x" * 101, "content": "y"}, "name"),
        ({"name": "x", "content": "y" * 20_001}, "content"),
        ({"name": "x", "content": "y", "team": 5}, "team"),
        ({"name": "Helper", "content": "y"}, "name"),
        ({"name": "gro\u202epuor", "content": "y"}, "name"),
        ({"name": "a\tb", "content": "y"}, "name"),
    ],
)
def test_bad_input_is_400_and_changes_nothing(owner_client, in_team, prompt, body, field):
    response = send(in_team(owner_client), "post", LIST, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["message"]
    assert error.get("field") == field
    assert SystemPrompt.objects.count() == 1


def test_a_bad_patch_changes_nothing(owner_client, in_team, prompt):
    response = send(in_team(owner_client), "patch", detail(prompt), {"content": ""})
    assert response.status_code == 400
    response = send(in_team(owner_client), "patch", detail(prompt), {"name": "a\u2066b"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "name"
    prompt.refresh_from_db()
    assert (prompt.content, prompt.version) == ("Be helpful.", 1)


def test_wrong_methods_are_405(owner_client, in_team, prompt):
    client = in_team(owner_client)
    assert client.put(LIST).status_code == 405
    assert client.delete(LIST).status_code == 405
    assert client.post(detail(prompt)).status_code == 405
    assert client.put(detail(prompt)).status_code == 405


def test_anonymous_requests_are_401(client, prompt):
    assert client.get(LIST).status_code == 401
    assert send(client, "post", LIST, {"name": "x", "content": "y"}).status_code == 401
    assert SystemPrompt.objects.count() == 1


def test_writes_need_the_csrf_token(csrf_client, owner, team, prompt):
    session = csrf_client.session
    session[SESSION_TEAM_KEY] = team.pk
    session.save()
    body = {"name": "X", "content": "Y"}
    assert send(csrf_client, "post", LIST, body).status_code == 403
    assert send(csrf_client, "patch", detail(prompt), {"content": "Z"}).status_code == 403
    assert csrf_client.delete(detail(prompt)).status_code == 403
    assert SystemPrompt.objects.count() == 1
    assert csrf_client.get(LIST).status_code == 200  # reads need no token
    csrf_client.get("/teams/")  # any page sets the csrftoken cookie
    token = csrf_client.cookies["csrftoken"].value
    response = csrf_client.post(
        LIST, json.dumps(body), content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 201


def test_the_list_is_one_query_per_concern(
    owner_client, in_team, team, django_assert_max_num_queries
):
    for n in range(20):
        SystemPrompt.objects.create(team=team, name=f"P{n}", content="x", position=n)
    client = in_team(owner_client)
    with django_assert_max_num_queries(6):
        assert len(client.get(LIST).json()["results"]) == 20


def test_a_fresh_client_uses_no_session_state(db, prompt, owner):
    client = Client()
    client.force_login(owner)
    # No current team chosen yet: the user's first team is used.
    assert [p["id"] for p in client.get(LIST).json()["results"]] == [prompt.pk]


def test_a_patch_of_a_prompt_deleted_meanwhile_is_404(admin_client, in_team, prompt, monkeypatch):
    read = prompts_api._current_team_prompt

    def read_then_deleted(request, prompt_id):
        found = read(request, prompt_id)
        SystemPrompt.objects.filter(pk=found.pk).delete()
        return found

    monkeypatch.setattr(prompts_api, "_current_team_prompt", read_then_deleted)
    response = send(in_team(admin_client), "patch", detail(prompt), {"content": "New."})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not SystemPrompt.objects.exists()


def test_a_patch_sent_with_the_etag_read_saves_and_answers_the_new_one(
    admin_client, in_team, prompt
):
    client = in_team(admin_client)
    read = client.get(detail(prompt))
    tag = read["ETag"]
    assert tag.startswith('"') and tag.endswith('"')
    changed = client.patch(
        detail(prompt),
        json.dumps({"content": "Be kind."}),
        content_type="application/json",
        headers={"If-Match": tag},
    )
    assert changed.status_code == 200, changed.content
    assert changed["ETag"] not in ("", tag)
    assert client.get(detail(prompt))["ETag"] == changed["ETag"]


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_a_write_with_an_etag_read_before_another_admins_change_is_412(
    owner_client, admin_client, in_team, prompt, method
):
    """Two admins read the prompt; Adam saves first; Olivia's change, sent with the ETag she
    read, saves nothing and says so instead of putting the old text back."""
    olivia, adam = in_team(owner_client), in_team(admin_client)
    tag = olivia.get(detail(prompt))["ETag"]
    assert send(adam, "patch", detail(prompt), {"content": "Adam's text."}).status_code == 200
    body = json.dumps({"name": "Olivia's name"}) if method == "patch" else None
    response = getattr(olivia, method)(
        detail(prompt), body, content_type="application/json", headers={"If-Match": tag}
    )
    assert response.status_code == 412, response.content
    assert response.json()["error"]["code"] == "precondition_failed"
    prompt.refresh_from_db()
    assert (prompt.name, prompt.content, prompt.version) == ("Helper", "Adam's text.", 2)


@pytest.mark.parametrize("header", ['"nonsense"', 'W/"x"', "garbage"])
def test_an_if_match_naming_no_current_etag_changes_nothing(owner_client, in_team, prompt, header):
    client = in_team(owner_client)
    response = client.patch(
        detail(prompt),
        json.dumps({"content": "New."}),
        content_type="application/json",
        headers={"If-Match": header},
    )
    assert response.status_code == 412
    prompt.refresh_from_db()
    assert prompt.content == "Be helpful."


def test_if_match_star_and_no_if_match_save_whatever_changed(owner_client, in_team, prompt):
    client = in_team(owner_client)
    for headers, content in (({"If-Match": "*"}, "One."), ({}, "Two.")):
        response = client.patch(
            detail(prompt),
            json.dumps({"content": content}),
            content_type="application/json",
            headers=headers,
        )
        assert response.status_code == 200
    prompt.refresh_from_db()
    assert prompt.content == "Two."


def test_a_save_racing_another_after_its_if_match_passed_is_412(
    owner_client, in_team, prompt, monkeypatch
):
    """The check is made again holding the prompt's row: a change saved between the request's
    read and its write is not saved over."""
    client = in_team(owner_client)
    tag = client.get(detail(prompt))["ETag"]
    save = prompts_api.actions.save_prompt

    def another_admin_first(*args, **kwargs):
        SystemPrompt.objects.filter(pk=prompt.pk).update(content="Meanwhile.")
        return save(*args, **kwargs)

    monkeypatch.setattr(prompts_api.actions, "save_prompt", another_admin_first)
    response = client.patch(
        detail(prompt),
        json.dumps({"locked": True}),
        content_type="application/json",
        headers={"If-Match": tag},
    )
    assert response.status_code == 412
    prompt.refresh_from_db()
    assert (prompt.content, prompt.locked) == ("Meanwhile.", False)


def test_a_name_spelled_with_a_combining_accent_is_taken_by_its_lookalike(
    owner_client, in_team, team
):
    """Café with é and with e + U+0301 look alike: one name, stored composed (NFC)."""
    client = in_team(owner_client)
    made = send(client, "post", LIST, {"name": "Cafe\u0301", "content": "x"})
    assert made.status_code == 201
    assert made.json()["name"] == "Caf\u00e9"
    again = send(client, "post", LIST, {"name": "Caf\u00e9", "content": "y"})
    assert again.status_code == 400
    error = again.json()["error"]
    assert (error["code"], error["field"]) == ("invalid", "name")
    assert "already exists" in error["message"]
    assert SystemPrompt.objects.filter(team=team).count() == 1
