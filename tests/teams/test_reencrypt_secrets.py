"""`manage.py reencrypt_secrets`: every stored secret moves to the current key, so an old
SECRET_KEY can leave SECRET_KEY_FALLBACKS without team owners entering their keys again."""

import io

import pytest
from django.core.management import CommandError, call_command

from chatapp.teams import crypto
from chatapp.teams.models import Team, TeamProvider
from chatapp.tools.models import ToolServer

NEW_KEY = "the-new-secret-key-0123456789-abcdefghij"


def reencrypt() -> str:
    out = io.StringIO()
    call_command("reencrypt_secrets", stdout=out)
    return out.getvalue()


def stored(team) -> tuple[TeamProvider, ToolServer, ToolServer]:
    provider = TeamProvider.objects.create(team=team, api_key_encrypted=crypto.encrypt("sk-team"))
    server = ToolServer.objects.create(
        team=team,
        name="docs",
        url="https://tools.example.com/mcp",
        token_encrypted=crypto.encrypt("tool-token"),
    )
    tokenless = ToolServer.objects.create(team=team, name="open", url="https://open.example.com")
    return provider, server, tokenless


def test_secrets_move_to_the_new_key_while_the_old_one_is_a_fallback(settings, team):
    provider, server, tokenless = stored(team)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [settings.SECRET_KEY]
    assert reencrypt() == "2 stored secrets encrypted with the current key.\n"
    settings.SECRET_KEY_FALLBACKS = []
    provider.refresh_from_db()
    server.refresh_from_db()
    tokenless.refresh_from_db()
    assert crypto.decrypt(provider.api_key_encrypted) == "sk-team"
    assert crypto.decrypt(server.token_encrypted) == "tool-token"
    assert tokenless.token_encrypted == ""


def test_a_secret_no_key_reads_is_named_and_left_as_it_was(settings, team, owner):
    provider, server, _ = stored(team)
    lost = server.token_encrypted
    settings.SECRET_KEY = "another-secret-used-for-a-while-0123456789"
    other = Team.objects.create(name="Other")
    later = TeamProvider.objects.create(team=other, api_key_encrypted=crypto.encrypt("sk-other"))
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [settings.SECRET_KEY]
    with pytest.raises(CommandError) as failed:
        reencrypt()
    assert str(failed.value) == (
        f"2 could not be read with any key this server has, and stay as they were: team provider"
        f" {provider.pk}, tool server {server.pk}. Their teams' owners must enter them again."
    )
    server.refresh_from_db()
    later.refresh_from_db()
    assert server.token_encrypted == lost
    settings.SECRET_KEY_FALLBACKS = []
    assert crypto.decrypt(later.api_key_encrypted) == "sk-other"


def test_with_nothing_to_move_it_says_so(db):
    assert reencrypt() == "0 stored secrets encrypted with the current key.\n"


def test_a_changed_field_encryption_key_goes_the_same_way(settings, team):
    settings.FIELD_ENCRYPTION_KEY = "the-first-field-key-0123456789-abcdefghij"
    provider, server, _ = stored(team)
    settings.FIELD_ENCRYPTION_KEY = "the-second-field-key-0123456789-abcdefghij"
    settings.SECRET_KEY_FALLBACKS = ["the-first-field-key-0123456789-abcdefghij"]
    assert reencrypt() == "2 stored secrets encrypted with the current key.\n"
    settings.SECRET_KEY_FALLBACKS = []
    provider.refresh_from_db()
    server.refresh_from_db()
    assert crypto.decrypt(provider.api_key_encrypted) == "sk-team"
    assert crypto.decrypt(server.token_encrypted) == "tool-token"
