"""A forgotten password is reset by email where the site sends mail (EMAIL_URL) and people sign
in with passwords; elsewhere the login page says a site admin sets a new one."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from chatapp.core.models import AddressMail
from chatapp.teams.models import AuditEvent
from tests.conftest import PASSWORD

NEW_PASSWORD = "a-new-long-pass-phrase-7"
ROUTES = (
    "/accounts/password/reset/",
    "/accounts/password/reset/sent/",
    "/accounts/password/reset/MQ/set-password/",
    "/accounts/password/reset/done/",
)


@pytest.fixture
def mail_on(settings):
    settings.EMAIL_URL = "smtp://mail.example.com:25"
    return settings


def ask_reset(client, address: str):
    return client.post("/accounts/password/reset/", {"email": address})


def link_in(message) -> str:
    """The path of the one link in a mail."""
    (link,) = re.findall(r"https?://\S+", message.body)
    return urlsplit(link).path


def test_without_mail_the_login_page_sends_people_to_a_site_admin(client, db, settings):
    settings.EMAIL_URL = ""
    page = client.get("/accounts/login/").content.decode()
    assert "Forgot your password? A site admin can set a new one for you." in page
    assert "/accounts/password/reset/" not in page
    for url in ROUTES:
        assert client.get(url).status_code == 404
    assert client.post(ROUTES[0], {"email": "max@example.com"}).status_code == 404
    assert mail.outbox == []


def test_a_forgotten_password_is_set_again_through_the_mailed_link(client, make_user, mail_on):
    max_ = make_user("max")
    elsewhere = Client()
    elsewhere.force_login(max_)
    assert elsewhere.get("/").status_code == 200
    page = client.get("/accounts/login/").content.decode()
    assert 'href="/accounts/password/reset/"' in page

    response = ask_reset(client, "MAX@example.com")  # the address in any case
    assert response.status_code == 302 and response["Location"] == "/accounts/password/reset/sent/"
    assert "Check your email" in client.get(response["Location"]).content.decode()
    (message,) = mail.outbox
    assert message.to == ["max@example.com"]
    assert "max" in message.body and "for 3 days" in message.body
    assert PASSWORD not in message.body

    form = client.get(link_in(message), follow=True)
    assert form.status_code == 200 and "Set a new password" in form.content.decode()
    set_url = form.request["PATH_INFO"]
    mismatched = {"new_password1": NEW_PASSWORD, "new_password2": "not-the-same-phrase-7"}
    assert client.post(set_url, mismatched).status_code == 200
    assert not AuditEvent.objects.filter(action="user.password").exists()
    done = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/accounts/password/reset/done/"
    max_.refresh_from_db()
    assert max_.check_password(NEW_PASSWORD) and not max_.check_password(PASSWORD)
    assert elsewhere.get("/")["Location"].startswith("/accounts/login/")  # signed out there
    (event,) = AuditEvent.objects.filter(action="user.password")
    assert (event.team, event.actor, event.details) == (None, max_, {"user": "max", "how": "reset"})
    assert event.summary == "max set a new password with a reset link mailed to them"

    # The link works once.
    again = client.get(link_in(message), follow=True).content.decode()
    assert "This link does not work any more" in again


def test_the_answer_is_the_same_whether_or_not_an_account_has_the_address(
    client, make_user, mail_on
):
    make_user("max")
    known = ask_reset(client, "max@example.com")
    unknown = ask_reset(client, "nobody@example.com")
    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert [m.to for m in mail.outbox] == [["max@example.com"]]


def test_one_mail_an_address_however_often_the_form_is_sent(client, make_user, mail_on):
    make_user("max")
    for _ in range(3):
        assert ask_reset(client, "max@example.com").status_code == 302
    assert len(mail.outbox) == 1


def test_after_the_pause_another_mail_goes(client, make_user, mail_on):
    make_user("max")
    make_user("eve")
    ask_reset(client, "max@example.com")
    ask_reset(client, "eve@example.com")  # each address has its own pause
    assert len(mail.outbox) == 2
    four_minutes_ago = timezone.now() - timedelta(minutes=4)
    AddressMail.objects.update(sent_at=four_minutes_ago)
    ask_reset(client, "Max@Example.com")
    assert len(mail.outbox) == 2
    AddressMail.objects.update(sent_at=four_minutes_ago - timedelta(minutes=1))
    ask_reset(client, "max@example.com")
    assert [m.to for m in mail.outbox[2:]] == [["max@example.com"]]
    assert AddressMail.objects.count() == 1  # the spent pauses are cleared away
    assert "max" not in str(AddressMail.objects.values_list("address_digest", flat=True))


@pytest.mark.django_db(transaction=True)
def test_the_pauses_running_when_the_mails_began_sharing_a_table_are_kept():
    before = ("accounts", "0004_user_email_unique")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    try:
        state = executor.loader.project_state(before)
        old_table = state.apps.get_model("accounts", "PasswordResetMail")
        sent_at = timezone.now() - timedelta(minutes=1)
        old_table.objects.create(address_digest="a" * 64, sent_at=sent_at)
        MigrationExecutor(connection).migrate([("accounts", "0005_address_mail")])
    finally:
        latest = MigrationExecutor(connection)
        latest.migrate(latest.loader.graph.leaf_nodes())
    moved = AddressMail.objects.values_list("kind", "address_digest", "sent_at")
    assert list(moved) == [("password_reset", "a" * 64, sent_at)]


def test_accounts_without_a_password_or_blocked_get_no_link(client, make_user, mail_on):
    sso = make_user("sso")
    sso.set_unusable_password()
    sso.save()
    make_user("blocked", is_active=False)
    ask_reset(client, "sso@example.com")
    ask_reset(client, "blocked@example.com")
    assert mail.outbox == []


def test_a_bad_or_tampered_link_says_so(client, make_user, mail_on):
    max_ = make_user("max")
    ask_reset(client, "max@example.com")
    link = link_in(mail.outbox[0])
    page = client.get(link[:-3] + "xyz/", follow=True)
    assert page.status_code == 200
    assert "This link does not work any more" in page.content.decode()
    odd = client.get("/accounts/password/reset/%%%/x/")
    assert odd.status_code == 200 and "This link does not work any more" in odd.content.decode()
    max_.refresh_from_db()
    assert max_.check_password(PASSWORD)


@pytest.mark.parametrize("opened_before", [False, True])
def test_a_link_mailed_before_the_account_was_deactivated_sets_nothing(
    client, make_user, mail_on, opened_before
):
    max_ = make_user("max")
    ask_reset(client, "max@example.com")
    link = link_in(mail.outbox[0])
    form = client.get(link, follow=True) if opened_before else None
    max_.is_active = False
    max_.save()
    if form is None:
        page = client.get(link, follow=True)
        assert "This link does not work any more" in page.content.decode()
        set_url = page.request["PATH_INFO"]
    else:
        set_url = form.request["PATH_INFO"]
    data = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    refused = client.post(set_url, data)
    assert refused.status_code == 200
    assert "This link does not work any more" in refused.content.decode()
    max_.refresh_from_db()
    assert max_.check_password(PASSWORD) and not max_.is_active
    assert not AuditEvent.objects.filter(action="user.password").exists()


def test_a_bad_address_is_a_clear_error_and_sends_nothing(client, db, mail_on):
    response = ask_reset(client, "not an address")
    assert response.status_code == 200
    assert "Enter a valid email address." in response.content.decode()
    assert mail.outbox == []


def test_with_passwords_off_there_is_no_reset(client, make_user, mail_on):
    make_user("max")
    mail_on.LOCAL_PASSWORDS = False
    for url in ROUTES:
        assert client.get(url).status_code == 404
    assert ask_reset(client, "max@example.com").status_code == 404
    assert mail.outbox == []
    assert get_user_model().objects.get(username="max").check_password(PASSWORD)
