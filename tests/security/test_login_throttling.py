"""Password guessing: after LOGIN_FAILURE_LIMIT wrong passwords the username is locked for
that address, even with the right password, until the cool-off passes."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.test import Client

from tests.conftest import PASSWORD

LOGIN = "/accounts/login/"


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
