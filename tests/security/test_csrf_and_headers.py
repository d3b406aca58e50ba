"""CSRF on every write, the session cookie's flags, and the Content-Security-Policy header on
every page, swept over every route the project serves (see routes.py)."""

import json
from html.parser import HTMLParser

import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client
from django.utils.http import urlsafe_base64_encode

from chatapp.chat.actions.sharing import share_conversation
from chatapp.chat.models import Conversation, Message
from chatapp.core.middleware import CONTENT_SECURITY_POLICY
from chatapp.teams.actions import create_api_key
from chatapp.teams.models import Invitation, JsonSchema, Membership, SafetyFlag, SystemPrompt
from chatapp.tools.models import ToolServer
from chatapp.uploads.actions import create_upload
from tests.conftest import PASSWORD
from tests.security.routes import project_routes

WRITES = ("post", "put", "patch", "delete")
PROBES = {"/healthz"}  # answered before the CSRF check, and they refuse every write (405)
# The OpenAI-compatible API reads no cookie: a session without a bearer key gets 401 (or 405).
MODEL = "Llama-3.3-70B-Instruct"
BEARER_ONLY = {"/v1/models", f"/v1/models/{MODEL}", "/v1/chat/completions"}
APPS = ("accounts", "teams", "chat", "uploads", "tools")


@pytest.fixture
def own_ids(owner, member, team, settings) -> dict:
    """A real value for every route parameter, all belonging to the owner. Mail is on, so the
    password reset's pages are there to be swept too."""
    settings.EMAIL_URL = "smtp://mail.example.com:25"
    conversation = Conversation.objects.create(team=team, owner=owner, model="m")
    question = Message.objects.create(conversation=conversation, role="user", content="q")
    shared = share_conversation(owner, conversation, "team")
    return {
        "team_id": team.pk,
        "membership_id": Membership.objects.get(team=team, user=member).pk,
        "prompt_id": SystemPrompt.objects.create(team=team, name="p", content="c").pk,
        "invitation_id": Invitation.objects.create(team=team, invited_by=owner).pk,
        "conversation_id": conversation.pk,
        "key_id": create_api_key(owner, team, "script")[0].pk,
        "flag_id": SafetyFlag.objects.create(team=team, message=question, stage="input").pk,
        "token": Invitation.objects.create(team=team, invited_by=owner).token,
        "signature": "not-a-valid-signature",  # an address confirmation link's
        "upload_id": create_upload(owner, team, "notes.txt", b"notes").pk,
        "share_id": shared.pk,
        "share_token": shared.token,
        "server_id": ToolServer.objects.create(team=team, name="t", url="https://9.9.9.9/").pk,
        "schema_id": JsonSchema.objects.create(team=team, name="s", schema={"type": "object"}).pk,
        "uidb64": urlsafe_base64_encode(str(owner.pk).encode()),  # a reset link's, with token
        "model_name": MODEL,
    }


def every_url(ids: dict) -> list[str]:
    urls = []
    for route in project_routes():
        missing = [n for n in route.parameters if n not in ids]
        assert not missing, f"{route.template}: add a value for {missing}"
        urls.append(route.url(**ids))
    return urls


def snapshot() -> dict:
    return {
        model._meta.label: list(model.objects.order_by("pk").values())
        for app in APPS
        for model in apps.get_app_config(app).get_models()
    }


# ---- CSRF ---------------------------------------------------------------------------------


def test_every_write_without_the_csrf_token_is_refused(owner, own_ids):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    before = snapshot()
    for url in every_url(own_ids):
        for method in WRITES:
            body = json.dumps({"title": "x", "name": "x", "content": "x"})
            response = getattr(client, method)(url, body, content_type="application/json")
            if url in PROBES:
                assert response.status_code == 405, (method, url)
            elif url in BEARER_ONLY:
                assert response.status_code in (401, 405), (method, url, response.status_code)
            else:
                assert response.status_code == 403, (method, url, response.status_code)
                assert b"CSRF verification failed" in response.content, (method, url)
    assert snapshot() == before


def test_login_and_signup_need_the_csrf_token_too(owner):
    client = Client(enforce_csrf_checks=True)
    login = {"username": owner.username, "password": PASSWORD}
    assert client.post("/accounts/login/", login).status_code == 403
    signup = {"username": "newbie", "password1": PASSWORD, "password2": PASSWORD}
    assert client.post("/accounts/signup/", signup).status_code == 403
    assert "_auth_user_id" not in client.session


def test_json_writes_pass_with_the_token_header(owner, own_ids):
    """The control: the same JSON write succeeds once it carries X-CSRFToken."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    client.get("/")  # sets the csrftoken cookie, as the chat page does
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    url = f"/api/conversations/{own_ids['conversation_id']}/"
    body = json.dumps({"title": "Renamed"})
    refused = client.patch(url, body, content_type="application/json")
    allowed = client.patch(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert (refused.status_code, allowed.status_code) == (403, 200)


class Forms(HTMLParser):
    """The POST forms of a page, and whether each carries the CSRF token."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and (attrs.get("method") or "").lower() == "post":
            self.forms.append({"action": attrs.get("action"), "token": False})
        elif tag == "input" and attrs.get("name") == "csrfmiddlewaretoken" and self.forms:
            self.forms[-1]["token"] = bool(attrs.get("value"))


def test_every_post_form_on_every_page_carries_the_token(owner_client, own_ids):
    seen = 0
    for url in every_url(own_ids) + ["/accounts/login/", "/accounts/signup/"]:
        response = owner_client.get(url)
        if not response.get("Content-Type", "").startswith("text/html"):
            continue
        parser = Forms()
        parser.feed(response.content.decode())
        assert all(form["token"] for form in parser.forms), (url, parser.forms)
        seen += len(parser.forms)
    anonymous = Client()
    for url in ("/accounts/login/", "/accounts/signup/"):
        parser = Forms()
        parser.feed(anonymous.get(url).content.decode())
        assert parser.forms and all(form["token"] for form in parser.forms), url
    assert seen >= 10  # logout, team actions, prompts, settings...


# ---- cookies ------------------------------------------------------------------------------


def test_the_session_cookie_is_httponly_lax_and_secure(client, owner):
    response = client.post("/accounts/login/", {"username": owner.username, "password": PASSWORD})
    assert response.status_code == 302
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["secure"] is True  # DEBUG is off here, as in production
    csrf = client.get("/").cookies[settings.CSRF_COOKIE_NAME]
    assert (csrf["samesite"], csrf["secure"]) == ("Lax", True)


# ---- Content-Security-Policy --------------------------------------------------------------


def script_sources(policy: str) -> str:
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    return directives.get("script-src", directives.get("default-src", ""))


class InlineScripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inline = 0
        self.handlers: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = [name for name, _ in attrs]
        data_block = dict(attrs).get("type") == "application/json"  # json_script: never run
        if tag == "script" and "src" not in names and not data_block:
            self.inline += 1
        self.handlers += [name for name in names if name.startswith("on")]


@pytest.mark.parametrize("who", ["anonymous", "owner"])
def test_every_page_has_a_csp_without_inline_scripts(client, owner, own_ids, who):
    if who == "owner":
        client.force_login(owner)
    pages = [u for u in every_url(own_ids) if u not in PROBES]  # probes answer JSON, first
    for url in pages + ["/does-not-exist/", "/admin/login/"]:
        response = client.get(url)
        policy = response.get("Content-Security-Policy")
        assert policy, (url, response.status_code)
        sources = script_sources(policy)
        assert "'self'" in sources and "unsafe-inline" not in sources, url
        assert "unsafe-eval" not in sources and "*" not in sources.split(), url
        assert "object-src 'none'" in policy and "base-uri 'none'" in policy, url
        # Images only from here: not even data: URLs, which nothing of the app uses.
        assert "img-src 'self';" in policy, url
        if response.get("Content-Type", "").startswith("text/html"):
            parser = InlineScripts()
            parser.feed(response.content.decode())
            assert (parser.inline, parser.handlers) == (0, []), url


@pytest.mark.parametrize(
    "url, host, status",
    [
        ("/static/css/chat.css", "testserver", 200),  # answered by whitenoise, before the views
        ("/accounts/login/", "evil.example", 400),  # a Host not in ALLOWED_HOSTS
    ],
    ids=["static-file", "disallowed-host"],
)
def test_responses_made_before_the_views_have_the_csp_too(client, url, host, status):
    response = client.get(url, HTTP_HOST=host)
    assert response.status_code == status
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
