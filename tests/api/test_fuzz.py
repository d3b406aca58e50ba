"""Schemathesis fuzzes every operation of /api/openapi.json, in process over WSGI, as a team
owner with data of their own and as an outsider: no answer may be a 500, and every answer must
match the document (status code, content type, body schema).

Valid requests (positive mode) must also conform; invalid ones (negative mode, e.g. a string
where a number goes, or a path Django's URLs do not match) need only not fail the server.
"""

import pytest
import schemathesis
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chatapp.api import api
from chatapp.chat.models import Conversation, Message
from chatapp.teams.models import JsonSchema, SystemPrompt
from chatapp.tools.models import ToolServer

schema = schemathesis.openapi.from_dict(api.get_openapi_schema(path_prefix="/api/"))
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CSRF_TOKEN = "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz"  # any 32 characters the cookie and header share


@pytest.fixture(scope="module")
def wsgi_app():
    """Django's WSGI app, keeping the test's database connection open between requests (as
    Django's test client does): closing it would lose the test's transaction."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield get_wsgi_application()
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def owners_ids(owner, team) -> dict:
    """The owner's objects; every generated path id is replaced by one of these, so the owner's
    requests reach the views (not only their 404s) and the outsider's name someone else's."""
    conversation = Conversation.objects.create(team=team, owner=owner, title="Plans", model="m")
    Message.objects.create(conversation=conversation, role="user", content="Where to?")
    prompt = SystemPrompt.objects.create(team=team, name="Helper", content="Be helpful.")
    # Loopback: the network guard refuses it at connect time, so a refresh reaches nothing.
    server = ToolServer.objects.create(team=team, name="Tools", url="https://127.0.0.1:9/mcp")
    saved = JsonSchema.objects.create(team=team, name="ticket", schema={"type": "object"})
    return {
        "conversation_id": conversation.pk,
        "prompt_id": prompt.pk,
        "team_id": team.pk,
        "server_id": server.pk,
        "schema_id": saved.pk,
    }


@pytest.fixture(autouse=True)
def no_lookups(monkeypatch):
    """Fuzzed tool server URLs never reach DNS or the internet: every host resolves privately."""
    monkeypatch.setattr("chatapp.tools.actions.resolve", lambda host, port: ["10.0.0.1"])


def session_of(user) -> dict:
    client = Client()
    client.force_login(user)
    return {
        settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value,
        settings.CSRF_COOKIE_NAME: CSRF_TOKEN,
    }


def check(case, app, cookies: dict, ids: dict):
    """Call with the owner's ids in the path; returns the response when the request was valid."""
    if case.path_parameters:
        case.path_parameters = {**case.path_parameters, **ids}
    positive = case.meta is None or case.meta.generation.mode.name == "POSITIVE"
    response = case.call_and_validate(
        app=app,
        cookies=cookies,
        headers={"X-CSRFToken": CSRF_TOKEN},
        checks=CONFORMANCE if positive else [not_a_server_error],
    )
    return response if positive else None


FUZZ = hypothesis_settings(
    max_examples=15,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is never luck
    database=None,
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@FUZZ
def test_an_owner_never_gets_a_500_or_an_answer_off_the_schema(case, wsgi_app, owner, owners_ids):
    check(case, wsgi_app, session_of(owner), owners_ids)


@schema.parametrize()
@FUZZ
def test_an_outsider_never_gets_a_500_or_an_answer_off_the_schema(
    case, wsgi_app, outsider, owners_ids
):
    response = check(case, wsgi_app, session_of(outsider), owners_ids)
    if response is not None and case.path_parameters:
        assert response.status_code == 404, response.text
