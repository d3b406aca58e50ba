"""The session store: Django's database sessions, read with one plain statement."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chatapp.core.sessions import SessionStore

pytestmark = pytest.mark.django_db


def saved(data: dict) -> str:
    session = SessionStore()
    session.update(data)
    session.create()
    return session.session_key


def test_is_the_sites_session_engine():
    assert settings.SESSION_ENGINE == "chatapp.core.sessions"


def test_a_saved_session_reads_back_in_one_statement():
    key = saved({"current_team_id": 7, "name": "Ada"})
    session = SessionStore(key)
    with CaptureQueriesContext(connection) as queries:
        assert session["current_team_id"] == 7
        assert session.get("name") == "Ada"
    assert len(queries) == 1
    assert session.session_key == key


def test_the_async_read_matches():
    key = saved({"current_team_id": 3})
    assert async_to_sync(SessionStore(key).aload)() == {"current_team_id": 3}


@pytest.mark.parametrize(
    "key", ["no-such-session-key-at-all", "short", None, "abcdefgh\x00ijklmnop", "ключ-сессии-abc"]
)
def test_an_unknown_or_malformed_key_reads_as_a_new_empty_session(key):
    session = SessionStore(key)
    assert session.load() == {}
    assert session.session_key is None


def test_an_expired_session_reads_as_empty_and_is_not_revived():
    key = saved({"current_team_id": 5})
    Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    session = SessionStore(key)
    assert session.load() == {}
    assert session.session_key is None


def test_tampered_data_reads_as_empty():
    key = saved({"current_team_id": 5})
    Session.objects.filter(pk=key).update(session_data="not-signed-by-this-site")
    assert SessionStore(key).load() == {}


def test_a_logged_in_client_stays_logged_in(client, django_user_model):
    user = django_user_model.objects.create_user("ada", password="pw-for-tests-only")
    client.force_login(user)
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("cookie", ['"\\000abcdefghijklmnop"', '"abcdefgh\\000"'])
def test_a_session_cookie_holding_a_nul_is_no_session_not_a_500(client, cookie):
    """A quoted cookie value may spell a NUL as an octal escape, which PostgreSQL cannot take
    as text: such a key names no session, as any other key Django never made."""
    client.raise_request_exception = False
    cookie_header = f"{settings.SESSION_COOKIE_NAME}={cookie}"
    assert client.get("/accounts/login/", HTTP_COOKIE=cookie_header).status_code == 200
    assert client.get("/api/me/", HTTP_COOKIE=cookie_header).status_code == 401
