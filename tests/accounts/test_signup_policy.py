"""SIGNUP_POLICY: who may create an account, and the budget a new personal team starts with."""

import re
import socket
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone

from chatapp.accounts import views
from chatapp.core.models import AddressMail
from chatapp.teams.actions import accept_invitation, ensure_personal_team
from chatapp.teams.models import Invitation, TeamPolicy
from tests.conftest import PASSWORD
from tests.support.ports import free_port

User = get_user_model()


def signup(client, username: str, email: str = "", next_url: str = ""):
    data = {"username": username, "email": email, "password1": PASSWORD, "password2": PASSWORD}
    query = f"?next={next_url}" if next_url else ""
    return client.post(f"/accounts/signup/{query}", data)


@pytest.fixture
def invite_only(settings):
    settings.SIGNUP_POLICY = "invite_only"
    return settings


def test_invite_only_is_the_default_when_debug_is_off(settings):
    from tests.core.test_settings import loaded_setting

    assert loaded_setting("SIGNUP_POLICY", SECRET_KEY="x" * 50) == "invite_only"
    assert loaded_setting("SIGNUP_POLICY", SECRET_KEY="x" * 50, DEBUG="1") == "open"


def test_the_first_account_can_always_sign_up(client, db, invite_only):
    assert signup(client, "founder").status_code == 302
    assert User.objects.get().is_superuser


def test_invite_only_refuses_a_stranger_and_says_why(client, site_admin, invite_only):
    page = client.get("/accounts/signup/")
    assert b"by invitation only" in page.content
    response = signup(client, "stranger", "stranger@example.com")
    assert response.status_code == 403
    assert b"ask a team admin for an invitation" in response.content
    assert not User.objects.filter(username="stranger").exists()


@pytest.mark.parametrize(
    ("username", "email"),
    [
        ("ada", "new@elsewhere.example"),  # a name an account has
        ("newcomer", "ada@elsewhere.example"),  # an address an account has
        ("a1ice", "new@elsewhere.example"),  # a name that could pass for an account's
    ],
)
def test_a_signup_the_policy_refuses_says_nothing_of_the_accounts_there(
    client, site_admin, make_user, settings, username, email
):
    """Whoever may not sign up learns only that: not which names and addresses have accounts
    (the password reset page does not tell either), whatever the form holds."""
    User.objects.create_user("ada", "ada@elsewhere.example", PASSWORD)
    make_user("alice")
    for policy in ("invite_only", "domain"):
        settings.SIGNUP_POLICY = policy
        settings.SIGNUP_ALLOWED_DOMAINS = ["example.com"]
        settings.EMAIL_URL = "smtp://mail.example.com:25"
        response = signup(client, username, email)
        page = response.content.decode()
        assert response.status_code == 403, policy
        assert "already exists" not in page and "another account" not in page, policy
        assert "ask a team admin for an invitation" in page, policy
    assert User.objects.count() == 3


def test_invite_only_admits_whoever_holds_a_usable_link(client, team, owner, invite_only):
    link = Invitation.objects.create(team=team, invited_by=owner)
    response = signup(client, "nina", next_url=f"/invite/{link.token}/")
    assert response.status_code == 302
    assert User.objects.filter(username="nina").exists()


def test_a_shareable_link_admits_one_signup_which_joins_its_team(client, team, owner, invite_only):
    # Else one link would open any number of accounts, each spending the site's key.
    link = Invitation.objects.create(team=team, invited_by=owner)
    response = signup(client, "nina", next_url=f"/invite/{link.token}/")
    assert response.status_code == 302 and response["Location"] == f"/teams/{team.pk}/"
    nina = User.objects.get(username="nina")
    assert team.memberships.get(user=nina).role == "member"
    assert "Welcome to Acme." in [
        str(m) for m in client.get(response["Location"]).context["messages"]
    ]
    client.logout()
    again = signup(client, "sock", next_url=f"/invite/{link.token}/")
    assert again.status_code == 403 and b"by invitation only" in again.content
    assert not User.objects.filter(username="sock").exists()


def test_a_link_used_meanwhile_creates_no_account(
    client, team, owner, make_user, invite_only, monkeypatch
):
    link = Invitation.objects.create(team=team, invited_by=owner)
    monkeypatch.setattr(views, "invitation_in", lambda next_url: link)  # read while usable
    accept_invitation(make_user("quicker"), link.token)
    response = signup(client, "late", next_url=f"/invite/{link.token}/")
    assert response.status_code == 403 and b"already been used" in response.content
    assert not User.objects.filter(username="late").exists()


def test_a_used_or_address_bound_invitation_admits_only_its_own_use(
    client, team, owner, member, invite_only
):
    used = Invitation.objects.create(team=team, invited_by=owner, accepted_by=member)
    used.accepted_at = used.created_at
    used.save()
    assert signup(client, "late", next_url=f"/invite/{used.token}/").status_code == 403
    bound = Invitation.objects.create(team=team, invited_by=owner, email="bob@example.com")
    response = signup(client, "eve", "eve@example.com", next_url=f"/invite/{bound.token}/")
    assert response.status_code == 403
    assert b"sign up with that address" in response.content
    response = signup(client, "bob", "bob@example.com", next_url=f"/invite/{bound.token}/")
    assert response.status_code == 302
    assert not User.objects.filter(username__in=["late", "eve"]).exists()


def test_domain_policy_admits_only_listed_domains(client, site_admin, settings):
    settings.SIGNUP_POLICY = "domain"
    settings.SIGNUP_ALLOWED_DOMAINS = ["example.com"]
    settings.EMAIL_URL = "smtp://mail.example.com:25"
    assert b"example.com" in client.get("/accounts/signup/").content
    for email in ("eve@evil.example", "eve@example.com.evil.example", ""):
        assert signup(client, "eve", email).status_code == 403
    assert signup(client, "ada", "Ada@Example.com").status_code == 302
    assert list(User.objects.exclude(pk=site_admin.pk).values_list("username", flat=True)) == [
        "ada"
    ]


def test_domain_policy_admits_an_address_only_once_a_mail_to_it_is_opened(
    client, site_admin, settings
):
    """Anyone can type an address at the company's domain: the account works once the link
    mailed there is opened, and without email the domain admits nobody."""
    settings.SIGNUP_POLICY = "domain"
    settings.SIGNUP_ALLOWED_DOMAINS = ["example.com"]
    assert signup(client, "eve", "not-eves@example.com").status_code == 403
    settings.EMAIL_URL = "smtp://mail.example.com:25"
    response = signup(client, "eve", "not-eves@example.com")
    assert "_auth_user_id" not in client.session
    assert client.get("/settings/").status_code == 302
    assert (
        client.post("/accounts/login/", {"username": "eve", "password": PASSWORD}).status_code
        == 200
    )
    (message,) = mail.outbox
    assert message.to == ["not-eves@example.com"]
    (link,) = re.findall(r"https?://\S+", message.body)
    assert client.get(urlsplit(link).path)["Location"] == "/"
    assert client.get("/settings/").status_code == 200
    assert response.status_code == 302


@pytest.fixture
def by_domain(settings):
    settings.SIGNUP_POLICY = "domain"
    settings.SIGNUP_ALLOWED_DOMAINS = ["example.com"]
    settings.EMAIL_URL = "smtp://mail.example.com:25"
    return settings


def mailed_link(message) -> str:
    (link,) = re.findall(r"https?://\S+", message.body)
    return urlsplit(link).path


def test_signing_up_again_before_confirming_mails_a_new_link_that_replaces_the_first(
    client, site_admin, by_domain
):
    """The first mail was lost, or went to spam: the same signup again works (once the pause
    between two mails to the address from one place is over)."""
    assert signup(client, "eve", "eve@example.com").status_code == 302
    AddressMail.objects.update(sent_at=timezone.now() - views.SIGNUP_MAIL_PAUSE)
    assert signup(client, "eve", "Eve@example.com").status_code == 302
    first, second = mail.outbox
    assert User.objects.filter(username="eve").count() == 1
    client.get(mailed_link(first))
    assert "_auth_user_id" not in client.session  # its signup is gone
    assert client.get(mailed_link(second))["Location"] == "/"
    assert User.objects.get(username="eve").is_active


def test_an_address_someone_typed_but_never_confirmed_does_not_keep_its_owner_out(
    client, site_admin, by_domain
):
    mallory = Client(REMOTE_ADDR="198.51.100.7")
    assert signup(mallory, "mallory", "ada@example.com").status_code == 302
    assert signup(client, "ada", "ada@example.com").status_code == 302
    assert not User.objects.filter(username="mallory").exists()
    assert client.get(mailed_link(mail.outbox[-1]))["Location"] == "/"
    assert User.objects.get(email="ada@example.com").username == "ada"


def test_a_stranger_who_typed_someones_address_gets_nothing_when_its_owner_opens_the_link(
    client, site_admin, by_domain
):
    """The stranger chose the password: the link opened by the address's owner, in a browser
    that did not sign up, activates nothing without that password, so the stranger never holds
    a confirmed account at the company's domain."""
    stranger = Client(REMOTE_ADDR="198.51.100.7")
    assert signup(stranger, "mallory", "alice@example.com").status_code == 302
    link = mailed_link(mail.outbox[0])
    page = client.get(link)
    wrong = client.post(link, {"password": "not-the-strangers"})
    assert "_auth_user_id" not in client.session
    assert not User.objects.get(username="mallory").is_active
    login = {"username": "mallory", "password": PASSWORD}
    assert "_auth_user_id" not in stranger.post("/accounts/login/", login).wsgi_request.session
    assert page.status_code == 200
    text = page.content.decode()
    assert "This browser did not sign up for it, so enter the password chosen at signup" in text
    assert "Did not sign up as <bdi>mallory</bdi>? Then someone else typed your address" in text
    assert wrong.status_code == 400
    assert "That is not the password mallory was signed up with" in wrong.content.decode()


def test_a_link_opened_on_another_device_confirms_with_the_signups_password(
    client, site_admin, by_domain
):
    """Signed up on a laptop, the mail read on a phone: the password chosen at signup confirms
    it there, and the mail says so."""
    assert signup(client, "eve", "eve@example.com").status_code == 302
    assert "anywhere else (another browser, your phone) it asks for the password you chose" in (
        " ".join(mail.outbox[0].body.split())
    )
    phone = Client()
    link = mailed_link(mail.outbox[0])
    assert 'autocomplete="current-password"' in phone.get(link).content.decode()
    response = phone.post(link, {"password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert phone.get("/settings/").status_code == 200
    assert User.objects.get(username="eve").is_active
    assert phone.get(link)["Location"] == "/accounts/login/"  # spent


def test_wrong_passwords_on_the_confirmation_page_end_the_signup(client, site_admin, by_domain):
    stranger = Client(REMOTE_ADDR="198.51.100.7")
    assert signup(stranger, "mallory", "ada@example.com").status_code == 302
    link = mailed_link(mail.outbox[0])
    for _ in range(views.SIGNUP_WRONG_PASSWORDS - 1):
        assert client.post(link, {"password": "guess"}).status_code == 400
    assert User.objects.filter(username="mallory").exists()
    ended = client.post(link, {"password": "guess"})
    assert ended.status_code == 302 and ended["Location"] == "/accounts/signup/"
    assert not User.objects.filter(username="mallory").exists()
    assert client.post(link, {"password": PASSWORD})["Location"] == "/accounts/login/"
    assert client.put(link).status_code == 405


def test_signing_up_with_one_address_over_and_over_mails_it_once_a_while_from_one_network(
    site_admin, by_domain
):
    """Each signup with an address replaced the last unconfirmed one and mailed a new link: a
    flood. One network (an IPv4 address, an IPv6 /64) mails an address once a while; the signup
    it asks meanwhile changes nothing, so the link mailed still works."""
    here, next_door = Client(REMOTE_ADDR="2001:db8::1"), Client(REMOTE_ADDR="2001:db8::2")
    assert signup(here, "eve", "eve@example.com").status_code == 302
    for browser, name in ((next_door, "eve2"), (here, "eve3"), (next_door, "eve")):
        response = signup(browser, name, "Eve@example.com")
        assert response.status_code == 429
        assert "mailed to eve@example.com a few minutes ago" in response.content.decode()
    assert [m.to for m in mail.outbox] == [["eve@example.com"]]
    assert list(User.objects.filter(email__iexact="eve@example.com").values_list("username")) == [
        ("eve",)
    ]

    AddressMail.objects.update(sent_at=timezone.now() - views.SIGNUP_MAIL_PAUSE)
    assert signup(next_door, "eve2", "eve@example.com").status_code == 302
    assert len(mail.outbox) == 2
    assert next_door.get(mailed_link(mail.outbox[1]))["Location"] == "/"
    assert User.objects.get(email="eve@example.com").username == "eve2"


def test_a_name_held_by_a_signup_whose_link_expired_is_free_again(client, site_admin, by_domain):
    assert signup(client, "sam", "sam@example.com").status_code == 302
    expired = timezone.now() - timedelta(seconds=views.SIGNUP_LINK_MAX_AGE + 60)
    User.objects.filter(username="sam").update(date_joined=expired)
    assert signup(client, "sam", "samuel@example.com").status_code == 302
    assert User.objects.get(username="sam").email == "samuel@example.com"


def test_a_refused_signup_leaves_the_unconfirmed_one_it_would_replace(
    client, site_admin, by_domain
):
    assert signup(client, "eve", "eve@example.com").status_code == 302
    data = {"username": "eve", "email": "eve@example.com", "password1": PASSWORD, "password2": "x"}
    assert client.post("/accounts/signup/", data).status_code == 200
    assert client.get(mailed_link(mail.outbox[0]))["Location"] == "/"


def test_an_address_no_database_can_compare_is_refused_by_the_form(client, site_admin, by_domain):
    response = signup(client, "eve", "eve\x00@example.com")
    assert response.status_code == 200
    assert not User.objects.filter(username="eve").exists()


def test_a_deactivated_members_address_and_name_stay_theirs(client, site_admin, by_domain, member):
    member.email = "member@example.com"
    member.is_active = False
    member.save()
    response = signup(client, member.username, "member@example.com")
    assert response.status_code == 200
    assert b"already exists" in response.content
    assert User.objects.filter(pk=member.pk).exists()


def test_an_account_deactivated_before_it_ever_signed_in_is_no_unconfirmed_signup(
    client, site_admin, by_domain, make_user
):
    """A site admin made it and shut it out before first use: it is not deleted to make way."""
    dora = make_user("dora", is_active=False)  # dora@example.com, no team, never signed in
    User.objects.filter(pk=dora.pk).update(date_joined=timezone.now() - timedelta(days=30))
    response = signup(client, "dora", "dora@example.com")
    assert response.status_code == 200 and b"already exists" in response.content
    assert signup(client, "someone", "someone@example.com").status_code == 302
    assert User.objects.filter(pk=dora.pk, is_active=False).exists()


def test_a_confirmation_mail_that_cannot_be_sent_makes_no_account(
    client, site_admin, settings, monkeypatch
):
    settings.SIGNUP_POLICY = "domain"
    settings.SIGNUP_ALLOWED_DOMAINS = ["example.com"]
    settings.EMAIL_URL = "smtp://mail.example.com:25"

    def mail_server_down(*args, **kwargs):
        raise ConnectionRefusedError("mail server down")

    monkeypatch.setattr(views, "send_mail", mail_server_down)
    response = signup(client, "eve", "eve@example.com")
    assert response.status_code == 503
    assert "could not be sent" in response.content.decode()
    assert not get_user_model().objects.filter(username="eve").exists()


@pytest.fixture
def silent_mail_server():
    """A mail server that takes the connection and never says a word."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@pytest.mark.parametrize("server", ["refusing", "silent"])
def test_a_mail_server_that_refuses_or_never_answers_makes_no_account(
    client, site_admin, by_domain, server, request
):
    by_domain.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    by_domain.EMAIL_HOST = "127.0.0.1"
    by_domain.EMAIL_PORT = (
        request.getfixturevalue("silent_mail_server") if server == "silent" else free_port()
    )
    by_domain.EMAIL_TIMEOUT = 0.5  # the site's default is longer (tests/core/test_settings.py)
    response = signup(client, "eve", "eve@example.com")
    assert response.status_code == 503
    assert "could not be sent" in response.content.decode()
    assert not User.objects.filter(username="eve").exists()


def test_open_signup_admits_anyone(client, site_admin, settings):
    settings.SIGNUP_POLICY = "open"
    assert signup(client, "anyone").status_code == 302


def test_a_new_personal_team_starts_with_the_site_budget(make_user, settings):
    settings.PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET = 50_000
    team = ensure_personal_team(make_user("pat"))
    assert TeamPolicy.objects.get(team=team).monthly_token_budget == 50_000
    settings.PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET = None
    other = ensure_personal_team(make_user("quinn"))
    assert not TeamPolicy.objects.filter(team=other).exists()


def test_a_next_naming_no_possible_invitation_is_no_invitation(client, site_admin, invite_only):
    # A NUL is no text PostgreSQL can compare: the page refuses, it does not fail.
    response = signup(client, "stranger", "stranger@example.com", next_url="/invite/a%00b/")
    assert response.status_code == 403
    assert not User.objects.filter(username="stranger").exists()


def test_the_login_and_signup_pages_say_what_an_invitation_link_is_for(
    client, team, owner, invite_only
):
    """Someone opening a link while signed out is sent to log in: both pages name the team and
    the role, and an address-bound invitation's address; a used link names nothing."""
    link = Invitation.objects.create(team=team, invited_by=owner, role="admin")
    login = client.get(f"/invite/{link.token}/", follow=True)
    assert login.request["PATH_INFO"] == "/accounts/login/"
    assert "You are invited to join Acme as an admin. Log in to accept it." in (
        login.content.decode()
    )
    page = client.get(f"/accounts/signup/?next=/invite/{link.token}/").content.decode()
    assert "You are invited to join Acme as an admin. Create your account to accept it." in page

    bound = Invitation.objects.create(team=team, invited_by=owner, email="bob@example.com")
    page = client.get(f"/accounts/signup/?next=/invite/{bound.token}/").content.decode()
    assert "as a member. Create your account to accept it." in page
    assert "It is for bob@example.com: sign up with that address." in page
    page = client.get(f"/accounts/login/?next=/invite/{bound.token}/").content.decode()
    assert "It is for bob@example.com: use the account with that address." in page

    signup(client, "nina", next_url=f"/invite/{link.token}/")  # uses the link up
    client.logout()
    for url in ("/accounts/login/", "/accounts/signup/"):
        assert (
            "You are invited"
            not in client.get(f"{url}?next=/invite/{link.token}/").content.decode()
        )
