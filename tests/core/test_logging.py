"""JSON log lines with request ids; ids from the proxy reused only when well formed; no secrets."""

import io
import json
import logging
import re
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import override_settings

from chatapp.core.logs import logging_config, request_id_var
from tests.conftest import PASSWORD


@pytest.fixture
def log_lines():
    """The root logger's output through the production JSON handler, as parsed lines."""
    config = logging_config("INFO", "json")
    options = {k: v for k, v in config["formatters"]["json"].items() if k != "()"}
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(config["formatters"]["json"]["()"](**options))
    for name in config["handlers"]["stdout"]["filters"]:
        handler.addFilter(config["filters"][name]["()"]())
    root = logging.getLogger()
    previous_level = root.level
    loggers = {name: logging.getLogger(name) for name in config["loggers"]}
    previous_levels = {name: logger.level for name, logger in loggers.items()}
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name, logger in loggers.items():
        logger.setLevel(config["loggers"][name]["level"])
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        for name, logger in loggers.items():
            logger.setLevel(previous_levels[name])


def test_a_line_is_one_json_object_with_the_request_id(log_lines):
    token = request_id_var.set("req-abc")
    try:
        logging.getLogger("chatapp.test").info("generation finished", extra={"tokens": 12})
    finally:
        request_id_var.reset(token)
    logging.getLogger("chatapp.test").warning("outside any request")
    inside, outside = log_lines()
    assert inside["message"] == "generation finished"
    assert inside["level"] == "INFO"
    assert inside["logger"] == "chatapp.test"
    assert inside["request_id"] == "req-abc"
    assert inside["tokens"] == 12
    assert inside["time"].endswith("+00:00")
    assert outside["request_id"] is None


def test_exceptions_stay_on_one_line(log_lines):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("chatapp.test").exception("it failed")
    (line,) = log_lines()
    assert "ValueError: boom" in line["exc_info"]


@override_settings(
    LLAMA_API_KEY="llm-live-key-0123456789",
    METRICS_TOKEN="scrape-token-99887766",
    SECRET_KEY_FALLBACKS=["the-old-secret-key-5566"],
)
def test_configured_secrets_never_reach_a_line(log_lines):
    log = logging.getLogger("chatapp.test")
    log.error("upstream said: bad key llm-live-key-0123456789")
    log.info("token", extra={"header": "Bearer scrape-token-99887766"})
    log.warning("signed with the-old-secret-key-5566")
    text = json.dumps(log_lines())
    assert "llm-live-key-0123456789" not in text
    assert "scrape-token-99887766" not in text
    assert "the-old-secret-key-5566" not in text
    assert text.count("[redacted]") == 3


SERVICE_URLS = {
    "DATABASE_URL": "postgres://chat:db-pass-4411@db.internal:5432/chat",
    "EMAIL_URL": "smtp+tls://mailer:mail%2Fpass-7722@smtp.internal:587",
    "REDIS_URL": "redis://:redis-pass-9933@redis.internal:6379/0",
}


@override_settings(
    **SERVICE_URLS,
    OIDC_RP_CLIENT_SECRET="oidc-client-secret-3344",
    FIELD_ENCRYPTION_KEY="field-encryption-key-5566",
    UPLOADS_S3_SECRET_ACCESS_KEY="bucket-secret-7788",
)
def test_service_addresses_their_passwords_and_other_secrets_never_reach_a_line(log_lines):
    log = logging.getLogger("chatapp.test")
    for url in SERVICE_URLS.values():
        log.error("could not connect to %s", url)
    # A password may also be logged alone, as a library's own message or a dump of options.
    for password in ("db-pass-4411", "mail/pass-7722", "mail%2Fpass-7722", "redis-pass-9933"):
        log.warning("options: password=%s", password)
    log.warning("token request with client_secret=oidc-client-secret-3344")
    log.warning("key field-encryption-key-5566")
    log.warning("S3 client with aws_secret_access_key=bucket-secret-7788")
    text = json.dumps(log_lines())
    for secret in ("pass-4411", "pass-7722", "pass-9933", "secret-3344", "key-5566", "secret-7788"):
        assert secret not in text
    assert text.count("[redacted]") == 10


def test_every_response_carries_a_request_id_and_an_access_line(client, db, log_lines):
    response = client.get("/accounts/login/?next=/secret-search")
    request_id = response["X-Request-ID"]
    assert len(request_id) == 32
    access = [line for line in log_lines() if line["logger"] == "chatapp.access"]
    assert access == [
        {
            **access[0],
            "level": "INFO",
            "request_id": request_id,
            "method": "GET",
            "path": "/accounts/login/",
            "status": 200,
        }
    ]
    assert "secret-search" not in json.dumps(access)


@pytest.fixture
def credentials(team, owner) -> tuple[str, str, str]:
    """An invitation's token, a share's and a password reset link's (shaped as Django's)."""
    from chatapp.chat.actions.sharing import share_conversation
    from chatapp.chat.models import Conversation
    from chatapp.teams.models import Invitation

    invitation = Invitation.objects.create(team=team, invited_by=owner).token
    share = share_conversation(
        owner, Conversation.objects.create(team=team, owner=owner, model="m"), "team"
    ).token
    return invitation, share, "cw2h9t-0123456789abcdef0123456789abcdef"


def test_credentials_in_an_address_are_blanked_out_of_the_access_line(
    client, owner, credentials, log_lines
):
    """An invitation's token, a share link's and a password reset link's are each enough to
    use the address: the access log names the route, not the credential."""
    invitation, share, reset = credentials
    client.force_login(owner)
    client.get(f"/invite/{invitation}/")
    client.get(f"/s/{share}/")
    client.logout()
    client.get(f"/accounts/password/reset/MQ/{reset}/")  # 404 without mail: still blanked
    paths = [line["path"] for line in log_lines() if line["logger"] == "chatapp.access"]
    assert paths[:2] == ["/invite/[redacted]/", "/s/[redacted]/"]
    text = json.dumps(log_lines())
    for secret in (invitation, share, reset):
        assert secret not in text


def test_a_credential_address_that_matches_no_route_is_blanked_too(
    client, owner, credentials, log_lines
):
    """A link that lost its final slash (answered by a redirect) or gained a character (a
    404), as links pasted into mail and chat often do, is still the credential."""
    invitation, share, reset = credentials
    client.force_login(owner)
    assert client.get(f"/invite/{invitation}").status_code == 301
    assert client.get(f"/s/{share}").status_code == 301
    assert client.get(f"/s/{share}/fork").status_code == 301
    assert client.get(f"/s/{share}./").status_code == 404
    client.logout()
    assert client.get(f"/accounts/password/reset/MQ/{reset}").status_code == 301
    paths = [line["path"] for line in log_lines() if line["logger"] == "chatapp.access"]
    assert paths == [
        "/invite/[redacted]",
        "/s/[redacted]",
        "/s/[redacted]",
        "/s/[redacted]",
        "/accounts/password/reset/[redacted]",
    ]
    text = json.dumps(log_lines())
    for secret in (invitation, share, reset):
        assert secret not in text


def test_the_sign_in_a_signup_confirmation_link_makes_names_no_credential(
    client, site_admin, settings, log_lines
):
    """The link that confirms a signup's address signs in: django-axes' line about that
    sign-in names the route as the access line does, not the link's signature."""
    settings.SIGNUP_POLICY = "domain"
    settings.SIGNUP_ALLOWED_DOMAINS = ["example.com"]
    settings.EMAIL_URL = "smtp://mail.example.com:25"
    data = {"username": "eve", "email": "eve@example.com"}
    data |= {"password1": PASSWORD, "password2": PASSWORD}
    assert client.post("/accounts/signup/", data).status_code == 302
    (link,) = re.findall(r"https?://\S+", mail.outbox[0].body)
    signature = urlsplit(link).path.split("/")[-2]
    assert client.get(urlsplit(link).path)["Location"] == "/"
    axes = [line["message"] for line in log_lines() if line["logger"].startswith("axes")]
    assert any('path_info: "/accounts/signup/confirm/[redacted]/"' in m for m in axes)
    assert signature not in json.dumps(log_lines())


def test_a_failed_request_s_error_line_blanks_the_credential_in_its_address(
    client, team, owner, log_lines, monkeypatch
):
    """Django's own line for a 500 names the path too, and carries the request."""
    from chatapp.teams import views
    from chatapp.teams.models import Invitation

    def fails(*args, **kwargs):
        raise RuntimeError("the page could not be built")

    monkeypatch.setattr(views, "_invitation_page", fails)
    token = Invitation.objects.create(team=team, invited_by=owner).token
    client.raise_request_exception = False
    client.force_login(owner)
    assert client.get(f"/invite/{token}/?next=/secret-search").status_code == 500
    lines = log_lines()
    (error,) = [line for line in lines if line["logger"] == "django.request"]
    assert error["message"] == "Internal Server Error: /invite/[redacted]/"
    assert "RuntimeError: the page could not be built" in error["exc_info"]
    assert error["request"] == "GET /invite/[redacted]/"
    assert token not in json.dumps(lines) and "secret-search" not in json.dumps(lines)


def test_a_well_formed_proxy_request_id_is_kept(client, db, log_lines):
    response = client.get("/accounts/login/", HTTP_X_REQUEST_ID="edge-7f3a.42")
    assert response["X-Request-ID"] == "edge-7f3a.42"
    assert {line["request_id"] for line in log_lines()} == {"edge-7f3a.42"}


@pytest.mark.parametrize("bad", ["two\nlines", "x" * 129, 'quote"d', ""])
def test_a_malformed_proxy_request_id_is_replaced(client, db, bad):
    response = client.get("/accounts/login/", HTTP_X_REQUEST_ID=bad)
    assert response["X-Request-ID"] != bad
    assert len(response["X-Request-ID"]) == 32


def test_requests_get_different_ids(client, db):
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz")["X-Request-ID"]
    assert first != second


def test_probes_log_below_info(client, db, log_lines):
    client.get("/healthz")
    assert not [line for line in log_lines() if line["logger"] == "chatapp.access"]


@pytest.fixture
def text_lines():
    """The root logger's output through the development `text` handler, as raw lines."""
    config = logging_config("INFO", "text")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(config["formatters"]["text"]["()"](config["formatters"]["text"]["format"]))
    for name in config["handlers"]["stdout"]["filters"]:
        handler.addFilter(config["filters"][name]["()"]())
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: stream.getvalue().splitlines()
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def test_a_path_or_name_cannot_forge_a_text_line_or_steer_the_terminal(client, db, text_lines):
    """With LOG_FORMAT=text a line break in an address (%0A) would start a line of the
    client's choosing, and an escape sequence would repaint the operator's terminal."""
    forged = "2026-01-01 00:00:00,000 INFO chatapp.access [x] GET /admin/ 200"
    client.get("/nothing%0D%0A" + forged.replace(" ", "%20") + "%1B[2J")
    logging.getLogger("chatapp.test").warning("Calling tool %s failed", "t\n" + forged)
    lines = text_lines()
    assert len(lines) == 2
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert all("\x1b" not in line and "\r" not in line for line in lines)
    assert "/nothing\\r\\n2026-01-01" in lines[0] and "\\x1b[2J" in lines[0]


def test_a_text_line_keeps_its_traceback_readable(text_lines):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("chatapp.test").exception("it failed")
    lines = text_lines()
    assert lines[0].endswith("it failed")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"


@override_settings(
    METRICS_TOKEN='scrape"token\\99887766',
    DATABASE_URL="postgres://chat:pässwort-4411@db.internal:5432/chat",
)
def test_a_secret_with_characters_json_escapes_is_still_redacted(log_lines, text_lines):
    """A quote, a backslash or a letter beyond ASCII comes out of the JSON encoder escaped
    (`\\"`, `\\\\`, `\\u00e4`): the secret is still found in the line."""
    log = logging.getLogger("chatapp.test")
    log.warning('header Bearer scrape"token\\99887766')
    log.warning("options: password=pässwort-4411")
    lines = log_lines()
    text = json.dumps(lines) + "\n".join(text_lines())
    assert "99887766" not in text and "wort-4411" not in text
    assert [line["message"] for line in lines] == [
        "header Bearer [redacted]",
        "options: password=[redacted]",
    ]


def test_a_tool_server_s_session_id_and_requests_are_not_logged(
    db, mcp_server, settings, log_lines
):
    """The MCP SDK logs each session's id at INFO (a tool server may take it as the session's
    credential) and its messages (tool results) at DEBUG; its HTTP client a line per request."""
    from asgiref.sync import async_to_sync

    from chatapp.tools import mcp_client

    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    assert async_to_sync(mcp_client.list_tools)(mcp_server.url, "", 10).tools
    assert async_to_sync(mcp_client.call)(mcp_server.url, "", "get_weather", {"city": "Oslo"}, 10)
    # The test's tool server runs in this process; a real one logs elsewhere.
    ours = [line for line in log_lines() if not line["logger"].startswith("mcp.server")]
    assert ours == []
