"""SITE_URL: the links the app mails and shows start with the site's own address, whatever
Host the request named. ALLOWED_HOSTS may admit several names (`.example.com` admits every
subdomain), so a forged Host could otherwise put a password reset link on someone else's host."""

import json
import re

import pytest
from django.core import mail
from django.test import Client

from chatapp.chat.models import Conversation, Message
from chatapp.teams.models import Invitation
from tests.conftest import PASSWORD, client_for
from tests.core.test_deploy_settings import PRODUCTION, manage
from tests.core.test_settings import load_settings

SITE = "https://chat.example.com"
FORGED = "evil.example.com:4444"  # admitted by ALLOWED_HOSTS=.example.com


@pytest.fixture
def site(settings):
    settings.ALLOWED_HOSTS = [".example.com"]
    settings.SITE_URL = SITE
    settings.EMAIL_URL = "smtp://mail.example.com:25"
    return settings


def mailed_link() -> str:
    (message,) = mail.outbox
    (link,) = re.findall(r"https?://\S+", message.body)
    return link


def test_a_password_reset_mail_links_to_the_site_whatever_host_asked(client, make_user, site):
    make_user("max")
    response = client.post(
        "/accounts/password/reset/", {"email": "max@example.com"}, HTTP_HOST=FORGED
    )
    assert response.status_code == 302
    assert mailed_link().startswith(f"{SITE}/accounts/password/reset/")


def test_a_signup_confirmation_mail_links_to_the_site(client, site_admin, site):
    site.SIGNUP_POLICY = "domain"
    site.SIGNUP_ALLOWED_DOMAINS = ["example.com"]
    data = {"username": "eve", "email": "eve@example.com"}
    data |= {"password1": PASSWORD, "password2": PASSWORD}
    assert client.post("/accounts/signup/", data, HTTP_HOST=FORGED).status_code == 302
    assert mailed_link().startswith(f"{SITE}/accounts/signup/confirm/")


def test_an_invitation_mail_and_the_members_page_link_to_the_site(owner_client, team, site):
    url = f"/teams/{team.pk}/invitations/"
    data = {"role": "member", "email": "new@example.com"}
    assert owner_client.post(url, data, HTTP_HOST=FORGED).status_code == 302
    invitation = Invitation.objects.get(team=team)
    assert mailed_link() == f"{SITE}/invite/{invitation.token}/"
    page = owner_client.get(f"/teams/{team.pk}/members/", HTTP_HOST=FORGED).content.decode()
    assert f'value="{SITE}/invite/{invitation.token}/"' in page
    assert "evil.example.com" not in page


def test_an_address_confirmation_mail_links_to_the_site(team, owner, make_user, client, site):
    invitation = Invitation.objects.create(team=team, invited_by=owner, email="nina@example.com")
    client.force_login(make_user("nina"))
    assert client.post(f"/invite/{invitation.token}/", HTTP_HOST=FORGED).status_code == 200
    assert mailed_link().startswith(f"{SITE}/invite/{invitation.token}/confirm/")


def test_the_share_list_and_the_api_address_name_the_site(member, team, site):
    reader = client_for(Client(), member)
    chat = Conversation.objects.create(team=team, owner=member, title="Taxes", model="m")
    Message.objects.create(conversation=chat, role="user", content="How do I file?")
    body = json.dumps({"audience": "team"})
    url = f"/api/conversations/{chat.pk}/shares/"
    created = reader.post(url, body, content_type="application/json", HTTP_HOST=FORGED)
    assert created.status_code == 201, created.content
    shares = reader.get("/settings/shares/", HTTP_HOST=FORGED).content.decode()
    assert f">{SITE}{created.json()['url']}<" in shares
    assert f"<code>{SITE}/v1</code>" in reader.get("/settings/", HTTP_HOST=FORGED).content.decode()


def test_without_site_url_links_follow_the_host_never_x_forwarded_host(client, make_user, settings):
    settings.EMAIL_URL = "smtp://mail.example.com:25"
    make_user("max")
    forwarded = {"HTTP_X_FORWARDED_HOST": "evil.example", "HTTP_X_FORWARDED_PROTO": "https"}
    client.post("/accounts/password/reset/", {"email": "max@example.com"}, **forwarded)
    assert mailed_link().startswith("http://testserver/accounts/password/reset/")


@pytest.mark.parametrize(
    "value",
    [
        "chat.example.com",
        "ftp://chat.example.com",
        "https://chat.example.com/chat",
        "https://chat.example.com?x=1",
        "https://user@chat.example.com",
        "https://",
        "https://chat.example.com:99999",
    ],
)
def test_a_site_url_that_is_no_origin_stops_start_up(value):
    result = load_settings(SECRET_KEY="x" * 50, ALLOWED_HOSTS="chat.example.com", SITE_URL=value)
    assert result.returncode != 0 and "SITE_URL" in result.stderr


def test_a_site_url_on_a_host_not_served_stops_start_up():
    result = load_settings(
        SECRET_KEY="x" * 50, ALLOWED_HOSTS="chat.example.com", SITE_URL="https://other.example"
    )
    assert result.returncode != 0 and "ALLOWED_HOSTS" in result.stderr


def test_a_site_url_with_a_port_and_a_final_slash_is_taken(settings):
    result = load_settings(
        SECRET_KEY="x" * 50,
        ALLOWED_HOSTS=".example.com",
        SITE_URL="https://chat.example.com:8443/",
    )
    assert result.returncode == 0, result.stderr


def test_check_deploy_warns_when_mail_goes_out_without_site_url():
    production = {
        **PRODUCTION,
        "ALLOWED_HOSTS": "chat.example.com",
        "EMAIL_URL": "smtp://mail.example.com:25",
    }
    result = manage("check", "--deploy", **production)
    assert "chatapp.W002" in result.stderr and "SITE_URL" in result.stderr
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production, SITE_URL=SITE)
    assert result.returncode == 0, result.stderr
