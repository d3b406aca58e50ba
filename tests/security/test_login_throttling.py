"""Password guessing: after LOGIN_FAILURE_LIMIT wrong passwords the username is locked for
that address, even with the right password, until the cool-off passes."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.db.models import F
from django.test import Client

from tests.conftest import PASSWORD

LOGIN = "/accounts/login/"
User = get_user_model()


@pytest.fixture
def ada(make_user):
    return make_user("ada")


def log_in(client: Client, username: str, password: str, address: str = "203.0.113.7"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def guess_wrong(client: Client, username: str, times: int, address: str = "203.0.113.7") -> None:
    for _ in range(times):
        response = log_in(client, username, "not-the-password", address)
        assert response.status_code == 200
        assert b"Please enter a correct username and password" in response.content


def lock_out(client: Client, username: str, limit: int) -> None:
    """Wrong passwords up to the limit: the last one is already answered with the lockout."""
    guess_wrong(client, username, limit - 1)
    assert log_in(client, username, "not-the-password").status_code == 429


def is_logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_the_limit_locks_the_username_even_for_the_right_password(client, ada, settings):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)
    lock_out(client, "ada", settings.AXES_FAILURE_LIMIT)
    response = log_in(client, "ada", PASSWORD)
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert b"wait 1 minute and try again" in response.content
    assert b'name="csrfmiddlewaretoken"' in response.content  # the login page, ready to retry
    assert not is_logged_in(client)


def test_the_lock_is_shared_by_every_client_and_process(ada, settings):
    """Failures live in the database: a fresh client (another process) is refused too."""
    lock_out(Client(), "ada", settings.AXES_FAILURE_LIMIT)
    assert AccessAttempt.objects.filter(username="ada").exists()
    fresh = Client()
    assert log_in(fresh, "ada", PASSWORD).status_code == 429
    assert not is_logged_in(fresh)


def test_other_accounts_and_other_addresses_are_not_locked(client, ada, make_user, settings):
    make_user("bob")
    lock_out(client, "ada", settings.AXES_FAILURE_LIMIT)
    assert log_in(client, "bob", PASSWORD).status_code == 302
    other_place = Client()
    assert log_in(other_place, "ada", PASSWORD, address="198.51.100.9").status_code == 302


def test_the_lock_ends_after_the_cool_off(client, ada, settings):
    lock_out(client, "ada", settings.AXES_FAILURE_LIMIT)
    assert log_in(client, "ada", PASSWORD).status_code == 429
    # As if the cool-off had passed: the recorded failures are older than it.
    past = settings.AXES_COOLOFF_TIME + timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - past)
    assert log_in(client, "ada", PASSWORD).status_code == 302
    assert is_logged_in(client)


def test_a_successful_login_resets_the_count(client, ada, settings):
    guess_wrong(client, "ada", settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(client, "ada", PASSWORD).status_code == 302
    client.logout()
    guess_wrong(client, "ada", settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(client, "ada", PASSWORD).status_code == 302


def test_the_admin_login_is_throttled_too(client, ada, settings):
    ada.is_staff = True
    ada.save()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "ada", "password": "nope"})
    response = client.post("/admin/login/", {"username": "ada", "password": PASSWORD})
    assert response.status_code == 429
    assert not is_logged_in(client)


def test_unknown_usernames_are_throttled_like_real_ones(client, db, settings):
    """The answer never tells whether an account exists."""
    lock_out(client, "nobody", settings.AXES_FAILURE_LIMIT)


@pytest.mark.parametrize("path", [LOGIN, "/admin/login/"])
def test_a_username_longer_than_any_account_is_counted_not_an_error(client, db, settings, path):
    # Stored cut to the throttle's column (255), which no username reaches (150).
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(path, {"username": "a" * 10_000, "password": "nope"})
    assert response.status_code == 429
    assert AccessAttempt.objects.get().username == "a" * 255


CONFIRMING = {
    "/accounts/password/": lambda typed: {
        "old_password": typed,
        "new_password1": "a-brand-new-passphrase-42",
        "new_password2": "a-brand-new-passphrase-42",
    },
    "/settings/delete-account/": lambda typed: {"confirmation": typed},
}
CONFIRMING["/admin/password_change/"] = CONFIRMING["/accounts/password/"]


@pytest.mark.parametrize("path", CONFIRMING)
def test_passwords_typed_while_signed_in_are_guesses_counted_like_logins(
    client, ada, settings, path
):
    """Whoever holds a session left open cannot try passwords without end on the pages that
    ask for the password again; past the limit the right one is refused too, the account is
    kept, and the sign-in from that address is locked with them."""
    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)
    User.objects.filter(pk=ada.pk).update(is_staff=True, is_superuser=True)
    client.force_login(ada)
    form = CONFIRMING[path]
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(path, form("not-the-password"), REMOTE_ADDR="203.0.113.7")
        assert response.status_code in (200, 400)
        assert b"not your password" in response.content or b"incorrectly" in response.content
    response = client.post(path, form(PASSWORD), REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 429
    assert b"Too many wrong passwords for this account" in response.content
    assert b"wait 1 minute and try again" in response.content
    ada.refresh_from_db()
    assert ada.check_password(PASSWORD)  # neither changed nor deleted
    assert is_logged_in(client)
    assert log_in(Client(), "ada", PASSWORD).status_code == 429
    # From another address the account's owner still confirms with their password.
    response = client.post(path, form(PASSWORD), REMOTE_ADDR="198.51.100.4")
    assert response.status_code == 302


@pytest.mark.parametrize("path", CONFIRMING)
def test_a_form_missing_its_password_is_no_guess(client, ada, settings, path):
    User.objects.filter(pk=ada.pk).update(is_staff=True, is_superuser=True)
    client.force_login(ada)
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        assert client.post(path, CONFIRMING[path]("")).status_code in (200, 400)
    assert not AccessAttempt.objects.exists()
