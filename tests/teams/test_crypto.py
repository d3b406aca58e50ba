"""Provider keys at rest: Fernet with a key derived from FIELD_ENCRYPTION_KEY or SECRET_KEY."""

import pytest
from django.test import Client

from chatapp.teams import crypto


def test_round_trip_and_a_fresh_token_each_time():
    first, second = crypto.encrypt("sk-123"), crypto.encrypt("sk-123")
    assert first != second and "sk-123" not in first
    assert crypto.decrypt(first) == crypto.decrypt(second) == "sk-123"


def test_a_different_secret_cannot_read_it(settings):
    token = crypto.encrypt("sk-123")
    settings.SECRET_KEY = "another-secret-entirely-0123456789"
    with pytest.raises(crypto.KeyUnreadable, match="enter it again"):
        crypto.decrypt(token)


def test_field_encryption_key_is_used_when_set(settings):
    settings.FIELD_ENCRYPTION_KEY = "field-key-0123456789-abcdefghij"
    token = crypto.encrypt("sk-123")
    settings.FIELD_ENCRYPTION_KEY = ""
    with pytest.raises(crypto.KeyUnreadable):
        crypto.decrypt(token)  # it was not encrypted with SECRET_KEY


def test_keys_stay_readable_after_setting_field_encryption_key(settings):
    token = crypto.encrypt("sk-123")
    settings.FIELD_ENCRYPTION_KEY = "field-key-0123456789-abcdefghij"
    assert crypto.decrypt(token) == "sk-123"


def test_keys_stay_readable_after_rotating_secret_key_with_a_fallback(settings):
    token = crypto.encrypt("sk-123")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-new-secret-key-0123456789"
    assert crypto.decrypt(token) == "sk-123"


def test_a_damaged_token_is_unreadable():
    with pytest.raises(crypto.KeyUnreadable):
        crypto.decrypt("not-a-token")


def test_sessions_outlive_a_rotated_secret_key_only_with_it_as_a_fallback(member, settings):
    kept, lost = Client(), Client()
    kept.force_login(member)
    lost.force_login(member)
    old = settings.SECRET_KEY
    settings.SECRET_KEY = "the-new-secret-key-0123456789"
    settings.SECRET_KEY_FALLBACKS = [old]
    assert kept.get("/settings/").status_code == 200  # and re-signed with the new key
    settings.SECRET_KEY_FALLBACKS = []
    assert kept.get("/settings/").status_code == 200
    assert lost.get("/settings/")["Location"].startswith("/accounts/login/")
