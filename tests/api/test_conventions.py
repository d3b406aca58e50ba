"""The JSON API's conventions, swept over every operation the OpenAPI document lists: JSON 401
for anonymous, 404 for other people's ids, 405 (with Allow) for other methods, the error
envelope, never_cache, and the document itself."""

import json
import re

import pytest
from django.test import Client

from chatapp.api import api, server_error
from chatapp.chat.actions.sharing import share_conversation
from chatapp.chat.models import Conversation
from chatapp.teams.actions import create_api_key
from chatapp.teams.models import JsonSchema, Membership, Role, SystemPrompt, Team
from chatapp.tools.models import ToolServer
from chatapp.uploads.actions import create_upload
from tests.conftest import client_for

METHODS = ("get", "post", "put", "patch", "delete")
PARAMETER = re.compile(r"{(\w+)}")


def operations() -> list[tuple[str, str]]:
    paths = api.get_openapi_schema(path_prefix="/api/")["paths"]
    return [(path, method) for path, item in paths.items() for method in item]


def path_templates() -> list[str]:
    return sorted({path for path, _ in operations()})


def fill(template: str, ids: dict) -> str:
    return PARAMETER.sub(lambda m: str(ids[m[1]]), template)


def send(client: Client, method: str, url: str, body: str = "{}"):
    return client.generic(method.upper(), url, body, content_type="application/json")


def assert_envelope(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    return error


def assert_never_cached(response) -> None:
    assert "no-cache" in response["Cache-Control"] and "no-store" in response["Cache-Control"]


@pytest.fixture
def foreign_ids(owner, team) -> dict:
    """Ids that exist but are not the outsider's."""
    return {
        "conversation_id": Conversation.objects.create(team=team, owner=owner, model="m").pk,
        "prompt_id": SystemPrompt.objects.create(team=team, name="p", content="c").pk,
        "team_id": team.pk,
        "upload_id": create_upload(owner, team, "notes.txt", b"notes").pk,
        "key_id": create_api_key(owner, team, "owner's")[0].pk,
        "share_id": share_conversation(
            owner, Conversation.objects.create(team=team, owner=owner, model="m"), "team"
        ).pk,
        "server_id": ToolServer.objects.create(team=team, name="t", url="https://9.9.9.9/").pk,
        "schema_id": JsonSchema.objects.create(team=team, name="s", schema={}).pk,
    }


@pytest.fixture
def own_ids(outsider) -> dict:
    """Ids the outsider owns: a team of their own, its prompt, their conversation."""
    mine = Team.objects.create(name="Eve's")
    Membership.objects.create(team=mine, user=outsider, role=Role.OWNER)
    conversation = Conversation.objects.create(team=mine, owner=outsider, model="m")
    return {
        "conversation_id": conversation.pk,
        "prompt_id": SystemPrompt.objects.create(team=mine, name="p", content="c").pk,
        "team_id": mine.pk,
        "upload_id": create_upload(outsider, mine, "notes.txt", b"notes").pk,
        "key_id": create_api_key(outsider, mine, "eve's")[0].pk,
        "share_id": share_conversation(outsider, conversation, "team").pk,
        # Loopback: the network guard refuses it at connect time, so a refresh reaches nothing.
        "server_id": ToolServer.objects.create(
            team=mine, name="t", url="https://127.0.0.1:9/mcp"
        ).pk,
        "schema_id": JsonSchema.objects.create(team=mine, name="s", schema={}).pk,
    }


def test_the_sweep_sees_every_endpoint():
    assert {path for path, _ in operations()} >= {
        "/api/conversations/",
        "/api/conversations/{conversation_id}/",
        "/api/conversations/{conversation_id}/export",
        "/api/models/",
        "/api/settings/",
        "/api/me/",
        "/api/system-prompts/",
        "/api/system-prompts/{prompt_id}/",
        "/api/teams/{team_id}/policy/",
        "/api/uploads/",
        "/api/uploads/{upload_id}/",
        "/api/keys/",
        "/api/keys/{key_id}/",
        "/api/teams/{team_id}/tool-servers/",
        "/api/teams/{team_id}/tool-servers/{server_id}/",
        "/api/teams/{team_id}/tool-servers/{server_id}/refresh/",
    }


@pytest.mark.parametrize(("path", "method"), operations())
def test_anonymous_gets_401_in_the_envelope(db, path, method):
    ids = {
        "conversation_id": 1,
        "prompt_id": 1,
        "team_id": 1,
        "upload_id": 1,
        "key_id": 1,
        "share_id": 1,
        "server_id": 1,
        "schema_id": 1,
    }
    url = fill(path, ids)
    response = send(Client(), method, url)
    assert_envelope(response, 401, "not_authenticated")
    assert_never_cached(response)


@pytest.mark.parametrize(("path", "method"), [op for op in operations() if "{" in op[0]])
def test_an_outsider_gets_404_for_other_peoples_ids(outsider_client, foreign_ids, path, method):
    url = fill(path, foreign_ids)
    body = json.dumps({"title": "mine", "name": "mine", "monthly_token_budget": 1})
    response = send(outsider_client, method, url, body)
    assert_envelope(response, 404, "not_found")
    assert_never_cached(response)


@pytest.mark.parametrize(("path", "method"), [op for op in operations() if "{" in op[0]])
def test_the_same_request_on_the_outsiders_own_ids_is_not_404(
    outsider_client, own_ids, path, method
):
    """The control for the test above: the 404 is about whose id it is."""
    url = fill(path, own_ids)
    response = send(outsider_client, method, url)
    assert response.status_code != 404, (method, url, response.content)


@pytest.mark.parametrize("path", path_templates())
def test_other_methods_get_405_with_allow(own_ids, outsider, path):
    client = client_for(Client(), outsider)
    allowed = {method for p, method in operations() if p == path}
    for method in set(METHODS) - allowed:
        response = send(client, method, fill(path, own_ids))
        assert_envelope(response, 405, "method_not_allowed")
        assert set(response["Allow"].split(", ")) == {m.upper() for m in allowed}
        assert_never_cached(response)


def test_every_answer_is_never_cached(member_client):
    for url in ("/api/conversations/", "/api/me/", "/api/models/", "/api/openapi.json"):
        response = member_client.get(url)
        assert response.status_code == 200, url
        assert_never_cached(response)


def test_the_answers_django_gives_itself_are_never_cached_either(member_client, rf):
    """An unknown address, one without its final slash, a body Django cannot parse, a 500."""
    for response in (
        member_client.get("/api/no-such-thing/"),
        member_client.get("/api/me"),
        member_client.post("/api/uploads/", b"x", content_type="multipart/form-data"),
        server_error(rf.get("/api/conversations/")),
    ):
        assert response.status_code in (400, 404, 500)
        assert_never_cached(response)


def test_writes_without_the_csrf_token_are_403_in_the_envelope(member):
    client = client_for(Client(enforce_csrf_checks=True), member)
    response = client.put("/api/settings/", "{}", content_type="application/json")
    assert_envelope(response, 403, "csrf_failed")
    assert "CSRF verification failed" in response.json()["error"]["message"]


def test_the_openapi_document_is_served_to_anyone(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    edit = document["paths"]["/api/conversations/{conversation_id}/"]["patch"]
    body = edit["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"title", "pinned"} and body["additionalProperties"] is False
    assert "ErrorOut" in document["components"]["schemas"]
    for method in ("post", "put", "patch", "delete"):  # it is read, as every address here
        refused = send(client, method, "/api/openapi.json")
        assert_envelope(refused, 405, "method_not_allowed")
        assert set(refused["Allow"].split(", ")) == {"GET", "HEAD"}


def test_the_docs_page_is_not_served_without_debug(client):
    assert client.get("/api/docs").status_code == 404


CSRF_TOKEN = "csrfcsrfcsrfcsrfcsrfcsrfcsrfcsrf"


def json_posts() -> list[str]:
    paths = api.get_openapi_schema(path_prefix="/api/")["paths"]
    return [
        path
        for path, item in paths.items()
        if "application/json" in item.get("post", {}).get("requestBody", {}).get("content", {})
    ]


@pytest.mark.parametrize("path", json_posts())
def test_a_multipart_form_sent_to_a_json_write_is_400_and_stores_nothing(outsider, own_ids, path):
    """The CSRF check reads a POST's form for its token, which leaves the body unreadable as
    JSON afterwards: the answer is still the envelope's 400, not a 500."""
    client = client_for(Client(enforce_csrf_checks=True, raise_request_exception=False), outsider)
    client.cookies["csrftoken"] = CSRF_TOKEN
    counts = [model.objects.count() for model in (SystemPrompt, JsonSchema, ToolServer)]
    response = client.post(
        fill(path, own_ids), {"name": "From a form", "content": "x"}, HTTP_X_CSRFTOKEN=CSRF_TOKEN
    )
    assert "application/json" in assert_envelope(response, 400, "invalid")["message"]
    assert [model.objects.count() for model in (SystemPrompt, JsonSchema, ToolServer)] == counts
