import pytest
from django.test import Client

from chatapp.teams import actions
from chatapp.teams.models import TeamProvider
from tests.support.simulator import SimulatorOptions

TEAM_KEY = "team-secret-key-7Q2vX9"
SITE_KEY = "site-secret-key-R4m8Kp"
TEAM_SERVER = "https://9.9.9.8/v1"  # a public address literal; tests never connect to it


@pytest.fixture(scope="session")
def simulator_options() -> SimulatorOptions:
    """A fast simulator that accepts TEAM_KEY only."""
    return SimulatorOptions(tokens_per_second=5000, api_key=TEAM_KEY)


@pytest.fixture
def admin_client(admin_member):
    client = Client()
    client.force_login(admin_member)
    return client


@pytest.fixture
def csrf_client(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    return client


@pytest.fixture
def team_server(team, owner, settings):
    """The team uses its own server (a placeholder public https URL) with its own key."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = False
    TeamProvider.objects.create(team=team, base_url=TEAM_SERVER)
    provider = TeamProvider.objects.get(team=team)
    provider.api_key_encrypted = actions.crypto.encrypt(TEAM_KEY)
    provider.save()
    return provider


@pytest.fixture
def deleted_once_read(monkeypatch):
    """Another admin deletes the row just after the page read it, before the save:
    `deleted_once_read(module, "reader")` wraps that module's reading function."""

    def deleting(owner, name):
        read = getattr(owner, name)
        deleted: list[int] = []

        def read_then_deleted(*args):
            found = read(*args)
            if found is not None and not deleted:
                deleted.append(found.pk)
                type(found).objects.filter(pk=found.pk).delete()
            return found

        monkeypatch.setattr(owner, name, read_then_deleted)

    return deleting
