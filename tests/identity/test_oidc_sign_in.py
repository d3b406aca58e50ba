"""Sign-in through a real OpenID Connect provider (django-oauth-toolkit in a subprocess, see
provider_process.py): the code flow with state, nonce and PKCE, account matching, group
mapping, turning local passwords off, and signing out."""

import asyncio
import html
import json
import re
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from chatapp.accounts.models import PendingSignup
from chatapp.accounts.signup import FIRST_ACCOUNT_NOTICE
from chatapp.accounts.sockets import SESSIONS_ENDED, user_group
from chatapp.identity import backends
from chatapp.identity.backends import OIDCBackend
from chatapp.identity.models import OIDCIdentity
from chatapp.teams.actions import accept_invitation
from chatapp.teams.models import AuditEvent, Invitation, Membership, Role, Team
from tests.conftest import PASSWORD
from tests.identity.provider_process import CLIENT_ID

FAILED = "did not complete, so you are not signed in"
OIDC_BACKEND = "chatapp.identity.backends.OIDCBackend"


def start(client: Client, next_url: str = "/") -> str:
    """The app's redirect to the provider's authorization endpoint."""
    response = client.get("/oidc/authenticate/", {"next": next_url})
    assert response.status_code == 302, response.content[:500]
    return response["Location"]


def come_back(client: Client, provider, username: str, authorize_url: str) -> tuple[str, object]:
    """The person signs in at the provider; returns (the callback path, the app's answer)."""
    back = provider.authorize(provider.browser_session(username), authorize_url)
    path = back.removeprefix("http://testserver")
    return path, client.get(path)


def sign_in(client: Client, provider, username: str, next_url: str = "/"):
    return come_back(client, provider, username, start(client, next_url))[1]


def signed_in_user(client: Client):
    user_id = client.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id) if user_id else None


def messages_of(response) -> str:
    return " ".join(str(m) for m in response.wsgi_request._messages)


def roles(user) -> dict[str, str]:
    return dict(Membership.objects.filter(user=user).values_list("team__name", "role"))


# ---- the flow -----------------------------------------------------------------------------


def test_the_authorization_request_carries_state_nonce_and_a_pkce_challenge(client, sso):
    query = parse_qs(urlsplit(start(client)).query)
    assert query["response_type"] == ["code"] and query["client_id"] == [CLIENT_ID]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    assert query["scope"] == ["openid email profile groups"]
    assert query["redirect_uri"] == ["http://testserver/oidc/callback/"]


def test_first_sign_in_creates_the_account_and_goes_to_next(client, sso, person):
    name = person()
    response = sign_in(client, sso, name, "/settings/")
    assert response.status_code == 302 and response["Location"] == "/settings/"
    user = signed_in_user(client)
    assert user.username == name and user.email == f"{name}@corp.example"
    assert not user.has_usable_password()
    identity = OIDCIdentity.objects.get(user=user)
    assert identity.issuer == sso.issuer and identity.subject
    assert client.get("/settings/").status_code == 200


def test_the_first_account_is_told_it_is_the_site_admin_and_later_ones_are_not(client, sso, person):
    get_user_model().objects.all().delete()
    first = sign_in(client, sso, person())
    assert signed_in_user(client).is_superuser
    assert FIRST_ACCOUNT_NOTICE in messages_of(first)
    later = sign_in(Client(), sso, person())
    assert FIRST_ACCOUNT_NOTICE not in messages_of(later)


def test_the_next_sign_in_finds_the_account_by_sub_even_with_a_new_email(client, sso, person):
    name = person()
    sign_in(client, sso, name)
    first = signed_in_user(client)
    client.logout()
    sso.set_claims(name, email="renamed@corp.example", email_verified=True, groups=[])
    sign_in(client, sso, name)
    assert signed_in_user(client) == first
    first.refresh_from_db()
    assert first.email == "renamed@corp.example"
    assert get_user_model().objects.filter(username__startswith=name).count() == 1


@pytest.mark.parametrize("held_as", ["carol@example.com", "CAROL@Example.com"])
def test_a_new_email_another_account_holds_is_not_copied(client, sso, person, make_user, held_as):
    """Two accounts never share an address: the sign-in goes on, the old address stays."""
    name = person()
    sign_in(client, sso, name)
    user = signed_in_user(client)
    client.logout()
    carol = make_user("carol")
    carol.email = held_as
    carol.save()
    sso.set_claims(name, email="carol@example.com", email_verified=True, groups=[])
    response = sign_in(client, sso, name)
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(client) == user
    user.refresh_from_db()
    assert user.email == f"{name}@corp.example"
    assert get_user_model().objects.filter(email__iexact="carol@example.com").count() == 1
    assert "belongs to another account here" in messages_of(response)


def test_a_first_sign_in_with_an_address_another_subject_holds_makes_an_account_without_it(
    client, sso, person
):
    first = person(email="shared@corp.example")
    sign_in(client, sso, first)
    holder = signed_in_user(client)
    other = Client()
    response = sign_in(other, sso, person(email="SHARED@corp.example"))
    assert response.status_code == 302 and response["Location"] == "/"
    newcomer = signed_in_user(other)
    assert newcomer != holder and newcomer.email == ""
    assert "belongs to another account here" in messages_of(response)
    assert get_user_model().objects.filter(email__iexact="shared@corp.example").count() == 1


def test_a_verified_email_links_an_existing_account(client, sso, person, make_user):
    existing = make_user("carol")
    name = person(email="CAROL@example.com")  # make_user gave carol carol@example.com
    sign_in(client, sso, name)
    assert signed_in_user(client) == existing
    assert OIDCIdentity.objects.get(user=existing).issuer == sso.issuer


@pytest.mark.parametrize("verified", ["true", "True"])
def test_email_verified_as_the_string_true_links_too(client, sso, person, make_user, verified):
    # Amazon Cognito's userinfo answers "email_verified": "true", a string.
    existing = make_user("erin")
    sign_in(client, sso, person(email="erin@example.com", email_verified=verified))
    assert signed_in_user(client) == existing


@pytest.mark.parametrize("verified", ["false", "yes", 1, None])
def test_anything_but_true_is_an_unverified_email(client, sso, person, make_user, verified):
    existing = make_user("fred")
    sign_in(client, sso, person(email="fred@example.com", email_verified=verified))
    user = signed_in_user(client)
    assert user != existing and user.email == ""


def test_an_unverified_email_never_matches_an_account(client, sso, person, make_user):
    existing = make_user("dave")
    name = person(email="dave@example.com", email_verified=False)
    response = sign_in(client, sso, name)
    assert response.status_code == 302
    user = signed_in_user(client)
    assert user != existing and user.username == name
    assert user.email == ""  # an address the provider did not verify is not kept either
    assert not OIDCIdentity.objects.filter(user=existing).exists()


@pytest.mark.parametrize("part", [0, 1])  # the dotless \u0131 in the local part, in the domain
def test_an_address_the_database_folds_alike_is_another_address(
    client, sso, person, make_user, part
):
    """PostgreSQL's upper() makes the dotless \u0131 an I, so `alice@f\u0131rm.example` (another
    domain) and `ALICE@FIRM.EXAMPLE` compare equal there: whoever holds the other mailbox does
    not get alice's account, nor delete iris's signup waiting for its confirmation."""

    def lookalike(address: str) -> str:
        parts = address.split("@")
        parts[part] = parts[part].replace("i", "\u0131", 1)
        return "@".join(parts)

    alice = make_user("alice")
    alice.email = "alice@firm.example"
    alice.save()
    iris = make_user("iris", is_active=False)
    iris.email = "iris@firm.example"
    iris.save()
    PendingSignup.objects.create(user=iris)
    response = sign_in(client, sso, person(email=lookalike(alice.email)))
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(client) != alice
    assert not OIDCIdentity.objects.filter(user=alice).exists()
    alice.refresh_from_db()
    assert alice.email == "alice@firm.example"
    sign_in(Client(), sso, person(email=lookalike(iris.email)))
    assert PendingSignup.objects.filter(user=iris).exists()


def test_an_address_typed_at_signup_but_never_confirmed_does_not_keep_its_owner_out(
    client, sso, person, site_admin, settings
):
    """Under SIGNUP_POLICY=domain anyone may type a colleague's address at signup: until the
    mailed link is opened the address is not theirs, and the colleague's sign-in goes on."""
    settings.SIGNUP_POLICY = "domain"
    settings.SIGNUP_ALLOWED_DOMAINS = ["corp.example"]
    settings.EMAIL_URL = "smtp://mail.example.com:25"
    name = person()
    typed = {"username": "mallory", "email": f"{name}@corp.example"}
    data = {**typed, "password1": PASSWORD, "password2": PASSWORD}
    assert Client().post("/accounts/signup/", data).status_code == 302
    response = sign_in(client, sso, name)
    assert response.status_code == 302 and response["Location"] == "/"
    user = signed_in_user(client)
    assert user.username == name and user.email == f"{name}@corp.example"
    assert not get_user_model().objects.filter(username="mallory").exists()


@pytest.mark.parametrize(
    "email",
    ["x" * 64 + "@" + "y" * 250 + ".example", "not an address"],  # the first is too long
)
def test_a_verified_email_that_is_no_usable_address_is_not_kept(client, sso, person, email):
    response = sign_in(client, sso, person(email=email))
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(client).email == ""


def test_a_groups_claim_that_is_no_list_gives_no_memberships(client, sso, person):
    response = sign_in(client, sso, person(groups=5))
    assert response.status_code == 302 and response["Location"] == "/"
    assert roles(signed_in_user(client)) == {}


def test_a_local_username_is_never_taken_over(client, sso, person, make_user):
    name = person(email_verified=False)
    local = make_user(name)
    sign_in(client, sso, name)
    user = signed_in_user(client)
    assert user != local and user.username == f"{name}2"


@pytest.mark.parametrize("same_username", [False, True])
def test_two_first_sign_ins_at_once_end_in_one_account(
    client, sso, person, monkeypatch, same_username
):
    """The second callback looked for the account just before the first one made it."""
    name = person()
    other_tab = Client()
    other_start = start(other_tab)
    sign_in(client, sso, name)
    account = signed_in_user(client)
    lookups = []
    find = OIDCBackend.filter_users_by_claims

    def looked_before_the_other_committed(backend, claims):
        lookups.append(claims["sub"])
        return [] if len(lookups) == 1 else find(backend, claims)

    monkeypatch.setattr(OIDCBackend, "filter_users_by_claims", looked_before_the_other_committed)
    if same_username:  # it also chose its username before the other's was taken
        monkeypatch.setattr(OIDCBackend, "_free_username", lambda backend, claims: name)
    _, response = come_back(other_tab, sso, name, other_start)
    assert response.status_code == 302 and response["Location"] == "/"
    assert len(lookups) == 2  # refused by a unique constraint, then found
    assert signed_in_user(other_tab) == account
    assert get_user_model().objects.filter(username__startswith=name).count() == 1
    assert OIDCIdentity.objects.get().user == account


def test_deactivating_an_account_ends_its_provider_sign_in_sessions(client, sso, person):
    sign_in(client, sso, person())
    user = signed_in_user(client)
    user.is_active = False
    user.save()
    assert client.get("/settings/").status_code == 302
    assert client.get("/api/me/").status_code == 401


# ---- refused callbacks --------------------------------------------------------------------


def test_a_wrong_state_signs_nobody_in(client, sso, person):
    name = person()
    authorize_url = start(client)
    back = sso.authorize(sso.browser_session(name), authorize_url)
    query = parse_qs(urlsplit(back).query)
    response = client.get("/oidc/callback/", {"code": query["code"][0], "state": "forged" * 6})
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert FAILED in messages_of(response)
    assert signed_in_user(client) is None
    assert not OIDCIdentity.objects.exists()


def test_a_callback_with_no_flow_started_signs_nobody_in(client, sso):
    response = client.get("/oidc/callback/", {"code": "abc", "state": "def"})
    assert response.status_code == 302 and signed_in_user(client) is None


def test_a_sign_in_cancelled_at_the_provider_ends_on_the_login_page(client, sso):
    state = parse_qs(urlsplit(start(client)).query)["state"][0]
    response = client.get("/oidc/callback/", {"error": "access_denied", "state": state})
    assert response["Location"] == "/accounts/login/" and FAILED in messages_of(response)
    assert state not in client.session["oidc_states"]  # that flow cannot be finished later


def test_a_link_to_the_callback_with_an_error_does_not_sign_anyone_out(client, sso, member):
    # Signing out takes a POST with the CSRF token; a link must not do it.
    client.force_login(member)
    client.get("/oidc/callback/", {"error": "access_denied"})
    assert signed_in_user(client) == member


def test_a_replayed_callback_is_refused(client, sso, person):
    name = person()
    path, response = come_back(client, sso, name, start(client))
    assert signed_in_user(client) is not None
    client.logout()
    again = client.get(path)  # the same code and state a second time
    assert again.status_code == 302 and again["Location"] == "/accounts/login/"
    assert signed_in_user(client) is None


def test_the_callback_again_while_signed_in_says_so_and_signs_nobody_out(client, sso, person):
    """A second click, the back button: the used state is refused, but the page says who is
    still signed in rather than that nobody is."""
    name = person()
    path, _ = come_back(client, sso, name, start(client, "/settings/"))
    user = signed_in_user(client)
    for again in (client.get(path), client.get("/oidc/callback/", {"error": "access_denied"})):
        assert again.status_code == 302 and again["Location"] == "/"
        said = messages_of(again)
        assert FAILED not in said and f"you are still signed in as {name}" in said
        assert signed_in_user(client) == user


def test_a_used_code_is_refused_by_the_provider_even_with_a_fresh_state(client, sso, person):
    name = person()
    path, _ = come_back(client, sso, name, start(client))
    used_code = parse_qs(urlsplit(path).query)["code"][0]
    other = Client()
    fresh_state = parse_qs(urlsplit(start(other)).query)["state"][0]
    response = other.get("/oidc/callback/", {"code": used_code, "state": fresh_state})
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert FAILED in messages_of(response)
    assert signed_in_user(other) is None


def test_refused_codes_do_not_lock_anyone_out_of_the_provider_sign_in(
    client, sso, person, settings
):
    # A callback carries no password to guess: login throttling must not count or block it.
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        stranger = Client()
        state = parse_qs(urlsplit(start(stranger)).query)["state"][0]
        refused = stranger.get("/oidc/callback/", {"code": "made-up", "state": state})
        assert refused["Location"] == "/accounts/login/" and FAILED in messages_of(refused)
    response = sign_in(client, sso, person())
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(client) is not None


def test_a_nonce_that_does_not_match_the_id_token_is_refused(client, sso, person):
    name = person()
    authorize_url = start(client)
    state = parse_qs(urlsplit(authorize_url).query)["state"][0]
    session = client.session
    session["oidc_states"][state]["nonce"] = "x" * 32
    session.save()
    _, response = come_back(client, sso, name, authorize_url)
    assert response["Location"] == "/accounts/login/" and FAILED in messages_of(response)
    assert signed_in_user(client) is None


@pytest.fixture
def app_clock(monkeypatch):
    """Moves the clock the app checks ID tokens against by some seconds from the provider's."""

    def shift(seconds: float) -> None:
        class Shifted(datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.now(tz) + timedelta(seconds=seconds)

        monkeypatch.setattr(jwt.api_jwt, "datetime", Shifted)

    return shift


def test_an_expired_id_token_is_refused_not_an_error(client, sso, person, app_clock):
    app_clock(+2 * 24 * 3600)  # the provider makes ID tokens that last hours
    response = sign_in(client, sso, person())
    assert response["Location"] == "/accounts/login/" and FAILED in messages_of(response)
    assert signed_in_user(client) is None


def test_a_provider_clock_a_little_ahead_still_signs_in(client, sso, person, app_clock):
    app_clock(-30)  # the ID token's iat is 30 seconds in the app's future
    response = sign_in(client, sso, person())
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(client) is not None


def test_a_provider_clock_far_ahead_is_refused_not_an_error(client, sso, person, app_clock):
    app_clock(-3600)
    response = sign_in(client, sso, person())
    assert response["Location"] == "/accounts/login/" and FAILED in messages_of(response)
    assert signed_in_user(client) is None


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_an_id_token_without_an_expiry_or_issue_time_is_refused(client, sso, person, claim):
    """OpenID Connect Core 2: exp and iat are required; a token without exp would never expire."""
    response = sign_in(client, sso, person(_drop_claims=[claim]))
    assert response["Location"] == "/accounts/login/" and FAILED in messages_of(response)
    assert signed_in_user(client) is None
    assert not OIDCIdentity.objects.exists()


def test_an_id_token_the_provider_signs_again_with_its_key_id_still_signs_in(client, sso, person):
    # The test provider's own re-signing, which the test above relies on, makes good tokens.
    response = sign_in(client, sso, person(_drop_claims=["auth_time"]))
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(client) is not None


@pytest.mark.parametrize("subject", ["s" * 256, ""])
def test_a_subject_no_account_can_be_linked_to_is_refused_not_an_error(
    client, sso, person, subject
):
    # OpenID Connect Core 2: sub is at most 255 characters (as OIDCIdentity keeps it).
    response = sign_in(client, sso, person(sub=subject))
    assert response["Location"] == "/accounts/login/" and FAILED in messages_of(response)
    assert signed_in_user(client) is None
    assert not OIDCIdentity.objects.exists()


# The provider puts a person's claims in the ID token over its own, aud and azp included.
@pytest.mark.parametrize(
    "claims",
    [
        {"aud": [CLIENT_ID, "another-client"]},  # several audiences and no azp
        {"aud": [CLIENT_ID, "another-client"], "azp": "another-client"},
        {"azp": "another-client"},  # one audience, ours, but authorized to another
        {"aud": ["another-client"], "azp": CLIENT_ID},
        {"aud": [], "azp": CLIENT_ID},
    ],
)
def test_an_id_token_for_other_clients_too_is_refused(client, sso, person, claims):
    """OpenID Connect Core 3.1.3.7: several audiences need an azp, and azp must be ours."""
    response = sign_in(client, sso, person(**claims))
    assert response["Location"] == "/accounts/login/" and FAILED in messages_of(response)
    assert signed_in_user(client) is None
    assert not OIDCIdentity.objects.exists()


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": [CLIENT_ID, "another-client"], "azp": CLIENT_ID},
        {"aud": [CLIENT_ID]},
        {"aud": CLIENT_ID, "azp": CLIENT_ID},
    ],
)
def test_an_id_token_authorized_to_this_client_signs_in(client, sso, person, claims):
    response = sign_in(client, sso, person(**claims))
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(client) is not None


def test_an_id_token_without_a_key_id_is_checked_against_the_providers_one_key(client, sso, person):
    # A key id is optional in a signed token (RFC 7515): a provider with one key may omit it.
    response = sign_in(client, sso, person(_key_id=False))
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(client) is not None


@pytest.mark.parametrize("endpoint", ["_token_body", "_userinfo_body"])
@pytest.mark.parametrize("body", ["[]", '"a token"', "null", "5"])
def test_a_token_or_userinfo_answer_that_is_no_json_object_is_refused_not_an_error(
    client, sso, person, endpoint, body
):
    response = sign_in(client, sso, person(**{endpoint: body}))
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert FAILED in messages_of(response)
    assert signed_in_user(client) is None
    assert not OIDCIdentity.objects.exists()


def test_an_unreachable_provider_is_a_message_not_an_error(client, settings, db):
    from tests.identity.conftest import sso_settings

    sso_settings(settings, "http://127.0.0.1:9/nothing-here")
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert "could not be reached" in messages_of(response)


class WrongDiscovery(BaseHTTPRequestHandler):
    """Something at OIDC_ISSUER_URL that answers JSON, but no discovery document."""

    body = b"[]"

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint")


@pytest.mark.parametrize(
    "body",
    [b"[]", b'"issuer"', json.dumps({"issuer": 7, **dict.fromkeys(ENDPOINTS, "/x")}).encode()],
)
def test_a_discovery_answer_that_is_no_document_is_a_message_not_an_error(
    client, settings, member, body, monkeypatch
):
    from tests.identity.conftest import sso_settings

    monkeypatch.setattr(WrongDiscovery, "body", body)
    server = ThreadingHTTPServer(("127.0.0.1", 0), WrongDiscovery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sso_settings(settings, f"http://127.0.0.1:{server.server_address[1]}/o")
        response = client.get("/oidc/authenticate/")
        assert response.status_code == 302 and response["Location"] == "/accounts/login/"
        assert "could not be reached" in messages_of(response)
        client.force_login(member, backend=OIDC_BACKEND)
        signed_out = client.post("/accounts/logout/")
        assert signed_out.status_code == 302 and signed_in_user(client) is None
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("end_session", [5, ["http://id.example/logout"], "javascript:alert(1)"])
def test_an_end_session_endpoint_that_is_no_web_address_is_not_offered(
    client, settings, member, end_session, monkeypatch
):
    document = {
        **dict.fromkeys(ENDPOINTS, "http://id.example/x"),
        "end_session_endpoint": end_session,
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), WrongDiscovery)
    issuer = f"http://127.0.0.1:{server.server_address[1]}/o"
    monkeypatch.setattr(WrongDiscovery, "body", json.dumps({**document, "issuer": issuer}).encode())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from tests.identity.conftest import sso_settings

        sso_settings(settings, issuer)
        client.force_login(member, backend=OIDC_BACKEND)
        signed_out = client.post("/accounts/logout/")
        assert signed_out.status_code == 302 and signed_out["Location"] == "/accounts/login/"
        assert signed_in_user(client) is None
    finally:
        server.shutdown()
        server.server_close()


# ---- group mapping ------------------------------------------------------------------------


def test_groups_add_change_and_remove_memberships_at_each_sign_in(client, sso, person):
    name = person(groups=["engineering", "unmapped"])
    sign_in(client, sso, name)
    user = signed_in_user(client)
    assert roles(user) == {"Engineering": "member"}
    client.logout()

    sso.set_claims(
        name,
        email=f"{name}@corp.example",
        email_verified=True,
        groups=["engineering", "eng-leads", "design"],
    )
    sign_in(client, sso, name)
    assert roles(user) == {"Engineering": "admin", "Design": "member"}
    client.logout()

    sso.set_claims(name, email=f"{name}@corp.example", email_verified=True, groups=["design"])
    sign_in(client, sso, name)
    assert roles(user) == {"Design": "member"}

    events = list(
        AuditEvent.objects.filter(actor=user)
        .order_by("id")
        .values_list("team_name", "action", "summary")
    )
    assert events == [
        ("Engineering", "team.create", f"Sign-in created the team Engineering for {name}"),
        ("Engineering", "member.add", f"Sign-in added {name} as member"),
        ("Design", "team.create", f"Sign-in created the team Design for {name}"),
        ("Design", "member.add", f"Sign-in added {name} as member"),
        ("Engineering", "member.role", f"Sign-in changed {name} from member to admin"),
        ("Engineering", "member.remove", f"Sign-in removed {name} (admin)"),
    ]


def test_groups_the_provider_only_points_to_leave_memberships_as_they_are(
    client, sso, person, caplog
):
    """Past about 200 groups Microsoft Entra ID names where to fetch them (a distributed claim,
    `_claim_names`) instead of listing them: that is no sign the person left every group."""
    name = person(groups=["engineering"])
    sign_in(client, sso, name)
    user = signed_in_user(client)
    client.logout()
    sso.set_claims(
        name,
        email=f"{name}@corp.example",
        email_verified=True,
        _distributed={
            "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://graph.example/v1.0/me/memberOf"}},
        },
    )
    sign_in(client, sso, name)
    assert signed_in_user(client) == user
    assert roles(user) == {"Engineering": "member"}
    assert "lists the groups elsewhere" in caplog.text


def test_a_deactivated_account_signing_in_is_refused_and_changes_nothing(client, sso, person):
    name = person(groups=[])
    sign_in(client, sso, name)
    user = signed_in_user(client)
    client.logout()
    user.is_active = False
    user.save()
    sso.set_claims(name, email="new@corp.example", email_verified=True, groups=["engineering"])
    response = sign_in(client, sso, name)
    assert response["Location"] == "/accounts/login/" and signed_in_user(client) is None
    user.refresh_from_db()
    assert roles(user) == {} and user.email == f"{name}@corp.example"
    assert not Team.objects.filter(name="Engineering").exists()
    assert not AuditEvent.objects.filter(actor=user).exists()


def test_an_account_deactivated_before_it_ever_signed_in_is_not_replaced_at_sign_in(
    client, sso, person, make_user
):
    dora = make_user("dora", is_active=False)
    dora.email = "dora@corp.example"
    dora.save()
    response = sign_in(client, sso, person(email="dora@corp.example"))
    assert response["Location"] == "/accounts/login/" and signed_in_user(client) is None
    assert get_user_model().objects.filter(pk=dora.pk, is_active=False).exists()
    assert get_user_model().objects.filter(email__iexact="dora@corp.example").count() == 1


def test_the_domain_signup_policy_holds_for_accounts_made_at_sign_in(
    client, sso, person, site_admin, settings
):
    """SIGNUP_POLICY=domain admits accounts at SIGNUP_ALLOWED_DOMAINS only (or by invitation):
    a provider's verified address elsewhere (a provider shared with the public) makes none."""
    settings.SIGNUP_POLICY = "domain"
    settings.SIGNUP_ALLOWED_DOMAINS = ["corp.example"]
    stranger = person(email="stranger@elsewhere.example", groups=["engineering"])
    response = sign_in(client, sso, stranger)
    assert response["Location"] == "/accounts/login/" and FAILED in messages_of(response)
    assert signed_in_user(client) is None
    assert not get_user_model().objects.filter(username=stranger).exists()
    assert (
        not OIDCIdentity.objects.exists() and not Team.objects.filter(name="Engineering").exists()
    )
    colleague = person()  # at corp.example
    sign_in(client, sso, colleague)
    assert signed_in_user(client).username == colleague


def test_a_link_that_admits_a_sign_in_under_the_domain_policy_is_used_up_by_it(
    client, sso, person, team, owner, settings
):
    """A shareable link admits one account from elsewhere, as at signup: the account joins the
    link's team at once, which uses the link up, rather than leave it for the next stranger."""
    settings.SIGNUP_POLICY = "domain"
    settings.SIGNUP_ALLOWED_DOMAINS = ["corp.example"]
    link = Invitation.objects.create(team=team, invited_by=owner)
    invited = person(email="nina@elsewhere.example")
    response = sign_in(client, sso, invited, f"/invite/{link.token}/")
    assert response.status_code == 302
    nina = signed_in_user(client)
    assert nina.username == invited and roles(nina) == {team.name: Role.MEMBER}
    link.refresh_from_db()
    assert link.accepted_by == nina
    other = Client()
    stranger = person(email="sock@elsewhere.example")
    response = sign_in(other, sso, stranger, f"/invite/{link.token}/")
    assert response["Location"] == "/accounts/login/" and FAILED in messages_of(response)
    assert signed_in_user(other) is None
    assert not get_user_model().objects.filter(username=stranger).exists()


def test_a_link_used_up_while_it_admitted_a_sign_in_makes_no_account(
    client, sso, person, team, owner, make_user, settings, monkeypatch
):
    settings.SIGNUP_POLICY = "domain"
    settings.SIGNUP_ALLOWED_DOMAINS = ["corp.example"]
    link = Invitation.objects.create(team=team, invited_by=owner)
    monkeypatch.setattr(backends, "invitation_in", lambda next_url: link)  # read while usable
    accept_invitation(make_user("first"), link.token)
    stranger = person(email="sock@elsewhere.example")
    response = sign_in(client, sso, stranger, f"/invite/{link.token}/")
    assert response["Location"] == "/accounts/login/"
    assert "already been used" in messages_of(response) and FAILED in messages_of(response)
    assert signed_in_user(client) is None
    assert not get_user_model().objects.filter(username=stranger).exists()
    assert not OIDCIdentity.objects.exists()


def test_teams_outside_the_map_are_left_alone(client, sso, person, team):
    name = person(groups=[])
    sign_in(client, sso, name)
    user = signed_in_user(client)
    Membership.objects.create(team=team, user=user, role=Role.MEMBER)
    client.logout()
    sign_in(client, sso, name)
    assert roles(user) == {"Acme": "member"}


def test_an_existing_team_is_joined_not_duplicated(client, sso, person, make_user):
    engineering = Team.objects.create(name="Engineering")
    Membership.objects.create(team=engineering, user=make_user("boss"), role=Role.OWNER)
    name = person(groups=["engineering"])
    sign_in(client, sso, name)
    assert Team.objects.filter(name="Engineering").count() == 1
    assert engineering.memberships.count() == 2


@pytest.mark.parametrize("groups", [["engineering"], ["eng-leads"], ["engineering", "eng-leads"]])
def test_a_team_the_map_spells_two_ways_is_one_team(client, sso, person, settings, groups):
    """Each group keeps the person in the team, whichever spelling of its name it uses."""
    settings.OIDC_GROUP_MAP = "engineering=Engineering:member,eng-leads=ENGINEERING:admin"
    name = person(groups=groups)
    for _ in range(2):
        sign_in(client, sso, name)
        client.logout()
    user = get_user_model().objects.get(username=name)
    role = "admin" if "eng-leads" in groups else "member"
    assert roles(user) == {"Engineering": role}
    removed = AuditEvent.objects.filter(actor=user, action="member.remove")
    assert not removed.exists()


@pytest.mark.parametrize("name", ["Design", "design"])
def test_a_member_cannot_take_the_name_of_a_team_the_groups_manage(
    client, sso, person, member_client, member, name
):
    # Else its creator would own the team the provider's group then joins people to.
    response = member_client.post("/teams/", {"name": name})
    assert response.status_code == 400 and "Single sign-on manages" in response.content.decode()
    assert not Team.objects.filter(name__iexact="Design").exists()
    sign_in(client, sso, person(groups=["design"]))
    design = Team.objects.get(name="Design")
    assert list(design.memberships.values_list("user", flat=True)) == [signed_in_user(client).pk]


def test_a_site_admin_may_create_a_team_the_groups_manage(client, sso, site_admin):
    client.force_login(site_admin)
    assert client.post("/teams/", {"name": "Design"}).status_code == 302
    assert roles(site_admin) == {"Design": "owner"}


def test_the_last_owner_is_kept_and_the_refusal_audited(client, sso, person):
    name = person(groups=["eng-owners"])
    sign_in(client, sso, name)
    user = signed_in_user(client)
    assert roles(user) == {"Engineering": "owner"}
    client.logout()
    sso.set_claims(name, email=f"{name}@corp.example", email_verified=True, groups=[])
    sign_in(client, sso, name)
    assert signed_in_user(client) == user  # the sign-in itself goes on
    assert roles(user) == {"Engineering": "owner"}
    kept = AuditEvent.objects.filter(actor=user).latest("id")
    assert kept.summary.startswith(f"Sign-in kept {name} as owner: a team needs an owner")
    assert kept.details["refused"] == "remove"


# ---- local passwords off ------------------------------------------------------------------


@pytest.fixture
def sso_only(settings, sso):
    settings.LOCAL_PASSWORDS = False
    settings.AUTHENTICATION_BACKENDS = ["chatapp.identity.backends.OIDCBackend"]
    return sso


def test_without_local_passwords_the_login_page_offers_only_the_provider(client, sso_only):
    page = client.get("/accounts/login/?next=/settings/").content.decode()
    assert "Sign in with Acme SSO" in page and "/oidc/authenticate/?next=/settings/" in page
    assert 'name="password"' not in page and "/accounts/signup/" not in page
    assert "Forgot your password?" not in page


def test_without_local_passwords_password_login_and_signup_are_gone(client, sso_only, member):
    response = client.post("/accounts/login/", {"username": member.username, "password": PASSWORD})
    assert (
        response.status_code == 403
        and "Password sign-in is turned off" in response.content.decode()
    )
    assert signed_in_user(client) is None
    assert client.get("/accounts/signup/").status_code == 404
    data = {"username": "newbie", "password1": PASSWORD, "password2": PASSWORD}
    assert client.post("/accounts/signup/", data).status_code == 404
    assert not get_user_model().objects.filter(username="newbie").exists()
    admin_login = client.get("/admin/login/?next=/admin/")
    assert admin_login.status_code == 302
    assert admin_login["Location"].startswith("/accounts/login/?next=/admin/")


def test_without_local_passwords_a_member_opening_the_admin_site_is_refused_not_looped(
    client, sso_only, person, site_admin
):
    # The admin site sends a signed-in non-admin to its login page, which sent them to ours,
    # which sent a signed-in person back to next: round and round.
    sign_in(client, sso_only, person())
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403
    assert [url for url, _ in response.redirect_chain] == ["/admin/login/?next=/admin/"]
    client.force_login(site_admin, backend=OIDC_BACKEND)
    assert client.get("/admin/login/?next=/admin/")["Location"] == "/admin/"


def test_createsuperuser_still_works_and_is_linked_at_sign_in(
    client, sso_only, person, monkeypatch
):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command(
        "createsuperuser",
        interactive=False,
        username="root",
        email="root@corp.example",
        verbosity=0,
    )
    root = get_user_model().objects.get(username="root")
    name = person(email="root@corp.example")
    sign_in(client, sso_only, name)
    assert signed_in_user(client) == root
    assert client.get("/admin/").status_code == 200


def test_without_local_passwords_no_page_offers_to_change_a_password(
    client, sso_only, person, monkeypatch
):
    """The account createsuperuser made has a password, which nothing here accepts."""
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command("createsuperuser", interactive=False, username="root", email="root@corp.example")
    sign_in(client, sso_only, person(email="root@corp.example"))
    page = client.get("/settings/").content.decode()
    assert "Change your password" not in page and "/accounts/password/" not in page
    assert "You sign in through your organisation's single sign-on" in page
    admin_page = client.get("/admin/").content.decode()
    assert "Log out" in admin_page and "/admin/password_change/" not in admin_page
    for url in ("/accounts/password/", "/accounts/password/done/", "/admin/password_change/"):
        assert client.get(url).status_code == 404, url
    data = {
        "old_password": PASSWORD,
        "new_password1": "x" + PASSWORD,
        "new_password2": "x" + PASSWORD,
    }
    assert client.post("/accounts/password/", data).status_code == 404
    assert get_user_model().objects.get(username="root").check_password(PASSWORD)


def test_with_local_passwords_the_login_form_keeps_working(client, sso, member):
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Acme SSO" in page and 'name="password"' in page
    response = client.post(
        "/accounts/login/?next=/settings/", {"username": member.username, "password": PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == "/settings/"
    assert signed_in_user(client) == member


def test_with_local_passwords_the_admin_site_offers_to_change_ones_password(
    client, sso, site_admin
):
    client.force_login(site_admin)
    page = client.get("/admin/").content.decode()
    assert 'href="/admin/password_change/"' in page and "View site" in page and "Log out" in page
    assert client.get("/admin/password_change/").status_code == 200


# ---- signing out --------------------------------------------------------------------------


async def next_event(layer, channel: str) -> dict:
    """The next message on the channel; one that never comes fails the test, not the run."""
    return await asyncio.wait_for(layer.receive(channel), timeout=10)


def test_signing_out_ends_the_session_closes_sockets_and_offers_the_provider(
    client, sso, person, django_capture_on_commit_callbacks
):
    name = person()
    sign_in(client, sso, name)
    user = signed_in_user(client)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(user.pk), channel)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/logout/")
    assert response.status_code == 200
    page = response.content.decode()
    end_session = f"{sso.issuer}/logout/?client_id={CLIENT_ID}"
    assert end_session in page and "post_logout_redirect_uri=" in page
    assert "id_token" not in page
    assert signed_in_user(client) is None
    assert client.get("/settings/").status_code == 302
    event = async_to_sync(next_event)(layer, channel)
    assert event["type"] == SESSIONS_ENDED and event["session"] is not None


def test_with_site_url_the_provider_is_given_the_sites_addresses_whatever_host_asked(
    client, sso, person, settings
):
    settings.ALLOWED_HOSTS = [".example.com", "testserver"]
    settings.SITE_URL = "https://chat.example.com"
    sso.allow_redirects_to(settings.SITE_URL)
    client.defaults["HTTP_HOST"] = "evil.example.com"
    authorize = start(client)
    callback = "https://chat.example.com/oidc/callback/"
    assert parse_qs(urlsplit(authorize).query)["redirect_uri"] == [callback]
    back = sso.authorize(sso.browser_session(person()), authorize)
    assert back.startswith(callback)
    response = client.get(back.removeprefix("https://chat.example.com"))  # the token request
    assert response.status_code == 302 and signed_in_user(client) is not None
    page = client.post("/accounts/logout/").content.decode()
    link = html.unescape(re.search(r'href="([^"]*/logout/[^"]*)"', page)[1])
    logout = parse_qs(urlsplit(link).query)
    assert logout["post_logout_redirect_uri"] == ["https://chat.example.com/accounts/login/"]


def test_a_password_user_signs_out_as_before(client, sso, member):
    client.force_login(member)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"


# ---- the views themselves -----------------------------------------------------------------


def test_without_a_provider_the_sign_in_urls_are_404(client, db):
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/", {"code": "a", "state": "b"}).status_code == 404
    assert "oidc" not in client.get("/accounts/login/").content.decode()


def test_wrong_methods_are_405(client, sso):
    assert client.post("/oidc/authenticate/").status_code == 405
    assert client.post("/oidc/callback/").status_code == 405
    assert client.get("/accounts/logout/").status_code == 405


def test_signing_out_needs_the_csrf_token(sso, member):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(member)
    assert csrf_client.post("/accounts/logout/").status_code == 403
    assert signed_in_user(csrf_client) == member


def test_a_first_sign_in_never_takes_a_name_that_could_pass_for_anothers(
    client, sso, person, make_user
):
    """The provider's name is the new account's unless it could pass for one already here."""
    name = person()
    local = make_user(name.replace("p", "\u0440", 1))  # a Cyrillic р, made before names were judged
    sign_in(client, sso, name)
    assert signed_in_user(client).username == f"{name}2"
    mixed = person(preferred_username="m\u0430x_1")  # a Cyrillic а among Latin letters
    other = Client()
    sign_in(other, sso, mixed)
    assert signed_in_user(other).username == mixed  # the address's name: one script
    assert local.username != name


def test_a_first_sign_in_stores_its_name_as_signup_would_so_look_alikes_are_caught(
    client, sso, person, settings
):
    """Some directories hold names in half-width katakana: "ﾔﾏﾀﾞ" is four characters, its
    usual form "ヤマダ" three. Stored as typed, a later signup as "ヤマダ" was not compared
    with it (names are compared with names as long) and stood beside it."""
    settings.SIGNUP_POLICY = "open"
    name = person(preferred_username="\uff94\uff8f\uff80\uff9e")  # ﾔﾏﾀﾞ
    sign_in(client, sso, name)
    usual = "\u30e4\u30de\u30c0"  # ヤマダ
    data = {"username": usual, "password1": PASSWORD, "password2": PASSWORD}
    assert Client().post("/accounts/signup/", data).status_code == 200  # refused
    assert signed_in_user(client).username == usual
    assert get_user_model().objects.count() == 1


@pytest.mark.parametrize("written", ["राजेश", "தமிழ்", "מֹשֶׁה"])
def test_a_first_sign_in_never_names_an_account_with_letters_missing(client, sso, person, written):
    """A username holds no combining marks (Django's rule), which Indic scripts write their
    vowels with: "राजेश" without them is "रजश", another name. The address's name is taken."""
    name = person(preferred_username=written)
    sign_in(client, sso, name)
    assert signed_in_user(client).username == name
