"""A team's own provider: the key is encrypted, write-only and never shown; which server and key
each request uses."""

import pytest
from django.db import connection
from django.urls import reverse

from chatapp.teams import crypto
from chatapp.teams.models import AuditEvent, Team, TeamProvider
from chatapp.teams.network import GuardedLlamaClient
from chatapp.teams.policy import PolicyError
from chatapp.teams.providers import llama_client
from tests.support.ports import free_port

from .conftest import SITE_KEY, TEAM_KEY, TEAM_SERVER
from .helpers import ask, failure, finished

PUBLIC_URL = "https://9.9.9.9/v1"  # an address literal: saving it resolves nothing


def provider_url(team) -> str:
    return reverse("teams:provider", args=[team.pk])


def raw_key_column(team) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_key_encrypted FROM teams_teamprovider WHERE team_id = %s", [team.pk]
        )
        return cursor.fetchone()[0]


@pytest.fixture
def site(settings):
    settings.LLAMA_API_BASE_URL = "https://site.example.com/v1"
    settings.LLAMA_API_KEY = SITE_KEY
    settings.LLAMA_API_PROTOCOL = "llama"
    return settings


def test_owner_sets_a_server_and_key_stored_encrypted(owner_client, team, owner, site):
    data = {"base_url": PUBLIC_URL + "/", "protocol": "openai", "api_key": TEAM_KEY}
    response = owner_client.post(provider_url(team), data)
    assert response.status_code == 302
    stored = TeamProvider.objects.get(team=team)
    assert (stored.base_url, stored.protocol) == (PUBLIC_URL, "openai")
    raw = raw_key_column(team)
    assert raw and raw != TEAM_KEY and TEAM_KEY not in raw
    assert crypto.decrypt(raw) == TEAM_KEY
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert actions == {"provider.update", "provider.key_set"}
    assert TEAM_KEY not in str(list(AuditEvent.objects.values_list("summary", "details")))


def test_the_key_never_appears_in_any_page(client, team, owner, admin_member, team_server, site):
    from chatapp.teams.models import SystemPrompt

    SystemPrompt.objects.create(team=team, name="P", content="c")
    pages = [
        reverse(name, args=[team.pk])
        for name in (
            "teams:detail",
            "teams:members",
            "teams:prompts",
            "teams:policy",
            "teams:provider",
            "teams:usage",
            "teams:audit",
        )
    ] + ["/teams/", "/api/system-prompts/"]
    client.force_login(owner)
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert TEAM_KEY.encode() not in response.content, url
    provider_page = client.get(provider_url(team)).content
    assert b"stored, encrypted" in provider_page and b"9.9.9.8" in provider_page
    assert team_server.api_key_encrypted.encode() not in provider_page
    # A refused form is shown again without the key typed into it.
    bad = {"base_url": "http://insecure.example.com", "protocol": "llama", "api_key": TEAM_KEY}
    response = client.post(provider_url(team), bad)
    assert response.status_code == 400 and TEAM_KEY.encode() not in response.content


def test_the_key_never_appears_in_the_admin(client, site_admin, team, team_server):
    client.force_login(site_admin)
    for url in (
        "/admin/teams/teamprovider/",
        f"/admin/teams/teamprovider/{team.pk}/change/",
        "/admin/teams/auditevent/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert TEAM_KEY.encode() not in response.content, url
        assert team_server.api_key_encrypted.encode() not in response.content, url


def test_site_admin_replaces_the_key_in_the_admin(client, site_admin, team, team_server):
    client.force_login(site_admin)
    url = f"/admin/teams/teamprovider/{team.pk}/change/"
    data = {"team": team.pk, "base_url": PUBLIC_URL, "protocol": "llama", "api_key": "new-key-1"}
    assert client.post(url, data).status_code == 302
    stored = TeamProvider.objects.get(team=team)
    assert stored.base_url == PUBLIC_URL and crypto.decrypt(stored.api_key_encrypted) == "new-key-1"
    data = {"team": team.pk, "base_url": "https://9.9.9.10/v1", "protocol": "llama"}
    response = client.post(url, data)
    assert response.status_code == 200 and b"Enter the API key again" in response.content


@pytest.mark.parametrize("key", ["sk-abc…", "clé-secrète", "sk abc"])
def test_a_key_no_request_header_can_carry_is_refused(client, owner, site_admin, team, key):
    """Page and admin alike: such a key would fail every request of the team."""
    client.force_login(owner)
    response = client.post(
        provider_url(team), {"base_url": "", "protocol": "llama", "api_key": key}
    )
    assert response.status_code == 400
    assert b"only ASCII" in response.content
    client.force_login(site_admin)
    data = {"team": team.pk, "base_url": "", "protocol": "llama", "api_key": key}
    response = client.post("/admin/teams/teamprovider/add/", data)
    assert response.status_code == 200 and b"only ASCII" in response.content
    assert not TeamProvider.objects.exists()
    assert not AuditEvent.objects.exists()


def test_a_provider_stays_with_its_team_in_the_admin(client, site_admin, team, team_server):
    client.force_login(site_admin)
    other = Team.objects.create(name="Other")
    data = {"team": other.pk, "base_url": TEAM_SERVER, "protocol": "openai"}
    response = client.post(f"/admin/teams/teamprovider/{team.pk}/change/", data)
    assert response.status_code == 302
    stored = TeamProvider.objects.get()
    assert (stored.team, stored.protocol) == (team, "openai")
    assert crypto.decrypt(stored.api_key_encrypted) == TEAM_KEY


def test_an_empty_key_field_keeps_the_stored_key(owner_client, team, team_server):
    data = {"base_url": team_server.base_url, "protocol": "openai", "api_key": ""}
    assert owner_client.post(provider_url(team), data).status_code == 302
    stored = TeamProvider.objects.get(team=team)
    assert stored.protocol == "openai" and crypto.decrypt(stored.api_key_encrypted) == TEAM_KEY


def test_a_new_server_address_needs_the_key_again(owner_client, team, team_server):
    data = {"base_url": PUBLIC_URL, "protocol": "llama", "api_key": ""}
    response = owner_client.post(provider_url(team), data)
    assert response.status_code == 400
    assert b"Enter the API key again" in response.content
    assert TeamProvider.objects.get(team=team).base_url == TEAM_SERVER


def test_a_server_needs_a_key(owner_client, team, owner):
    response = owner_client.post(provider_url(team), {"base_url": PUBLIC_URL, "protocol": "llama"})
    assert response.status_code == 400
    assert not TeamProvider.objects.filter(team=team).exclude(base_url="").exists()


def test_back_to_the_site_server(owner_client, team, team_server):
    data = {"base_url": "", "protocol": "llama", "clear_key": "on"}
    assert owner_client.post(provider_url(team), data).status_code == 302
    stored = TeamProvider.objects.get(team=team)
    assert (stored.base_url, stored.api_key_encrypted) == ("", "")
    assert AuditEvent.objects.filter(action="provider.key_clear").exists()


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://9.9.9.9/v1", b"https://"),
        ("ftp://9.9.9.9/v1", b"https://"),
        ("https://", b"https://"),
        ("https://user:pw@9.9.9.9/v1", b"without a user name"),
        ("https://9.9.9.9/v1?key=1", b"without a user name"),
        ("https://9.9.9.9:99999/v1", b"port"),
        ("https://127.0.0.1/v1", b"not a public address"),
        ("https://localhost:8443/v1", b"not a public address"),
        ("https://10.1.2.3/v1", b"not a public address"),
        ("https://169.254.169.254/latest", b"not a public address"),
        ("https://[::1]/v1", b"not a public address"),
        ("https://no-such-host.invalid/v1", b"could not be resolved"),
        ("https://9.9.9.9/v1\r\nX-Injected: 1", b"control characters"),
        ("https://9.9.9.9/v1\nfoo", b"control characters"),
        ("https://9.9.9.9/\tv1", b"control characters"),
        ("https://9.9.9.9 /v1", b"control characters"),
        ("https://9.9.9.9/v1\x00", b"Null characters"),
        ("https:///v1", b"https://"),
        ("https://[::1", b"https://"),
        ("https://[9.9.9.9]/v1", b"https://"),
        ("https://xn--a.example.com/v1", b"not a valid URL"),
    ],
)
def test_bad_server_addresses_are_refused(owner_client, team, owner, settings, url, error):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = False
    response = owner_client.post(
        provider_url(team), {"base_url": url, "protocol": "llama", "api_key": "k"}
    )
    assert response.status_code == 400
    assert error in response.content
    assert not TeamProvider.objects.filter(team=team).exists()
    assert not AuditEvent.objects.exists()


def test_a_refused_host_name_is_named_as_typed_without_its_addresses(owner_client, team, settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = False
    data = {"base_url": "https://localhost:8443/v1", "protocol": "llama", "api_key": "k"}
    response = owner_client.post(provider_url(team), data)
    assert response.status_code == 400
    page = response.content.decode()
    assert "The provider address localhost resolves to a private or reserved address" in page
    assert "127.0.0.1" not in page and "::1" not in page


def test_private_addresses_and_http_when_the_site_allows_them(owner_client, team, settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    data = {"base_url": "http://127.0.0.1:8080/v1", "protocol": "openai", "api_key": "k"}
    assert owner_client.post(provider_url(team), data).status_code == 302
    assert TeamProvider.objects.get(team=team).base_url == "http://127.0.0.1:8080/v1"


# Which server and key a team's requests use.


def test_without_a_provider_the_site_server_and_key(team, site):
    client = llama_client(team)
    assert type(client).__name__ == "LlamaClient"
    assert (client.config.base_url, client.config.api_key) == (site.LLAMA_API_BASE_URL, SITE_KEY)


def test_a_team_key_without_a_server_goes_to_the_site_server(team, site):
    TeamProvider.objects.create(team=team, api_key_encrypted=crypto.encrypt(TEAM_KEY))
    client = llama_client(team)
    assert (client.config.base_url, client.config.api_key) == (site.LLAMA_API_BASE_URL, TEAM_KEY)
    assert client.config.protocol == "llama"


def test_a_team_server_gets_only_the_team_key_through_the_guard(team, team_server, site):
    client = llama_client(team)
    assert isinstance(client, GuardedLlamaClient)
    assert (client.config.base_url, client.config.api_key) == (team_server.base_url, TEAM_KEY)


def test_the_site_key_is_never_sent_to_a_team_server(team, sim, site, settings):
    """A team server with no key of its own is ignored: requests go to the site's server."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    settings.LLAMA_API_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens there
    TeamProvider.objects.create(team=team, base_url=sim.native_url)
    client = llama_client(team)
    assert client.config.base_url == "http://127.0.0.1:9/v1"
    assert failure(ask(client)).code == "upstream_unavailable"
    assert sim.requests == []


def test_a_team_server_out_of_reach_points_at_the_teams_provider_page(team, site, settings):
    """The fix is on the team's Provider page, not in the site's LLAMA_API_BASE_URL."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    TeamProvider.objects.create(
        team=team,
        base_url=f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
        protocol="openai",
        api_key_encrypted=crypto.encrypt(TEAM_KEY),
    )
    error = failure(ask(llama_client(team)))
    assert error.code == "upstream_unavailable"
    assert "the team's Provider page" in error.message
    assert "LLAMA_API_BASE_URL" not in error.message


def test_a_team_server_on_loopback_answers_when_the_site_allows_it(team, sim, site, settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    TeamProvider.objects.create(
        team=team,
        base_url=sim.openai_url,
        protocol="openai",
        api_key_encrypted=crypto.encrypt(TEAM_KEY),
    )
    events = ask(llama_client(team), "Hello from the team")
    assert finished(events)
    assert [r["messages"][-1]["content"] for r in sim.requests] == ["Hello from the team"]


def test_an_unreadable_key_is_a_clear_error(team, settings):
    TeamProvider.objects.create(team=team, api_key_encrypted=crypto.encrypt(TEAM_KEY))
    settings.SECRET_KEY = "a-completely-different-secret-key"
    with pytest.raises(PolicyError) as caught:
        llama_client(team)
    assert caught.value.code == "provider_key_unreadable"
    assert "enter it again" in caught.value.message


@pytest.mark.parametrize(
    "url", ["https://9.9.9.9/v1\r\nX-Injected: 1", "https://9.9.9.9/\tv1", "https:///v1"]
)
def test_a_stored_url_that_cannot_be_used_is_a_provider_error(team, site, url):
    TeamProvider.objects.create(team=team, base_url=url, api_key_encrypted=crypto.encrypt(TEAM_KEY))
    with pytest.raises(PolicyError) as caught:
        llama_client(team)
    assert caught.value.code == "provider_invalid"
    assert "Provider page" in caught.value.message


def test_a_bad_site_url_is_a_provider_error_naming_the_setting(team, site):
    site.LLAMA_API_BASE_URL = "https://site.example.com/v1\r\n"
    with pytest.raises(PolicyError) as caught:
        llama_client(team)
    assert caught.value.code == "provider_invalid"
    assert "LLAMA_API_BASE_URL" in caught.value.message


def test_operator_timeouts_and_attempts_reach_every_client(team, site, settings):
    settings.LLAMA_TIMEOUTS = {
        "connect_timeout": 2.0,
        "first_token_timeout": 15.0,
        "idle_timeout": 7.0,
        "total_timeout": 90.0,
    }
    settings.LLAMA_MAX_ATTEMPTS = 5
    config = llama_client(team).config
    assert (config.connect_timeout, config.first_token_timeout) == (2.0, 15.0)
    assert (config.idle_timeout, config.total_timeout, config.max_attempts) == (7.0, 90.0, 5)
