"""The team's Tools page: managers add and change servers; members read; outsiders 404."""

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chatapp.teams.models import AuditEvent
from chatapp.tools import actions
from chatapp.tools.models import ServerStatus, Tool, ToolServer
from tests.support.mcp_server import run_tool_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def private_allowed(settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True


def page_of(team) -> str:
    return f"/teams/{team.pk}/tools/"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_owner_adds_a_server_from_the_page(owner_client, team, mcp_server):
    response = owner_client.post(
        page_of(team), {"name": "helpdesk", "url": mcp_server.url, "timeout": "12"}, follow=True
    )
    assert response.status_code == 200
    assert b"Added helpdesk: 4 tools." in response.content
    server = ToolServer.objects.get(team=team)
    assert server.timeout == 12 and server.status == ServerStatus.UP
    page = response.content.decode()
    assert "Today&#x27;s weather in a city." in page
    assert "Input schema" in page and "&quot;city&quot;" in page
    assert "changes things: always asks" in page  # create_ticket


def test_a_refused_url_is_shown_on_the_form_and_stores_nothing(owner_client, team, settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = False
    response = owner_client.post(
        page_of(team), {"name": "meta", "url": "https://169.254.169.254/", "timeout": "30"}
    )
    assert response.status_code == 400
    assert b"The tool server 169.254.169.254 is not a public address" in response.content
    assert not ToolServer.objects.exists()


def test_a_token_too_short_to_hide_is_refused_on_the_form(owner, team, team_tool_server):
    """Every place a result or an error quotes the token is hidden: a token of a character
    or two would hide those characters wherever they stand."""
    client = logged_in(owner)
    added = client.post(
        page_of(team),
        {"name": "short", "url": team_tool_server.url, "timeout": "30", "token": "ab"},
    )
    assert added.status_code == 400
    assert b"The token must be at least 8 characters long" in added.content
    assert ToolServer.objects.count() == 1
    base = f"{page_of(team)}{team_tool_server.pk}/"
    edit = {"name": "helpdesk", "url": team_tool_server.url, "timeout": "30", "token": "1"}
    changed = client.post(base, edit)
    assert changed.status_code == 400
    assert b"The token must be at least 8 characters long" in changed.content
    assert not ToolServer.objects.get().has_token


def test_tool_toggles_save_and_are_audited(owner, team, team_tool_server):
    tools = {tool.name: tool for tool in team_tool_server.tools.all()}
    checked = {f"enabled-{tool.pk}": "on" for name, tool in tools.items() if name != "broken"}
    checked[f"ask_first-{tools['get_weather'].pk}"] = "on"
    url = f"{page_of(team)}{team_tool_server.pk}/tools/"
    response = logged_in(owner).post(url, checked)
    assert response.status_code == 302
    assert Tool.objects.get(name="broken").enabled is False
    assert Tool.objects.get(name="get_weather").ask_first is True
    assert Tool.objects.get(name="create_ticket").enabled is True
    assert AuditEvent.objects.filter(action="tool.update").count() == 1


def test_settings_refresh_and_remove(owner, team, team_tool_server, mcp_server):
    client, base = logged_in(owner), f"{page_of(team)}{team_tool_server.pk}/"
    response = client.post(base, {"name": "desk", "url": mcp_server.url, "timeout": "7"})
    assert response.status_code == 302
    team_tool_server.refresh_from_db()
    assert (team_tool_server.name, team_tool_server.timeout) == ("desk", 7)
    bad = client.post(base, {"name": "desk", "url": "ftp://x", "timeout": "7"})
    assert bad.status_code == 400 and b"Enter an https:// URL" in bad.content
    mcp_server.stop()
    refreshed = client.post(base + "refresh/", follow=True)
    assert b"Refreshed desk, but it is down: Could not connect" in refreshed.content
    assert ToolServer.objects.get().status == ServerStatus.DOWN
    assert client.post(base + "remove/").status_code == 302
    assert not ToolServer.objects.exists()


def test_a_save_from_a_page_read_before_another_admins_change_saves_nothing(
    owner, admin_member, team, team_tool_server, mcp_server
):
    client, base = logged_in(owner), f"{page_of(team)}{team_tool_server.pk}/"
    page = client.get(page_of(team))
    seen = page.context["rows"][0]["form"]["seen"].value()
    assert f'name="seen" value="{seen}"' in page.content.decode()
    with run_tool_server() as moved:
        async_to_sync(actions.change_server)(admin_member, team_tool_server, url=moved.url)
        stale = {"name": "helpdesk", "url": mcp_server.url, "timeout": "7", "seen": seen}
        response = client.post(base, stale)
        assert response.status_code == 400
        assert b"changed meanwhile, by someone else" in response.content
        team_tool_server.refresh_from_db()
        assert (team_tool_server.url, team_tool_server.timeout) == (moved.url, 30)
        # The page now shows the change: saving it again is a choice made knowing it.
        again = response.context["rows"][0]["form"]["seen"].value()
        assert client.post(base, {**stale, "seen": again}).status_code == 302
    team_tool_server.refresh_from_db()
    assert (team_tool_server.url, team_tool_server.timeout) == (mcp_server.url, 7)


def test_members_see_the_list_without_forms(member, team, team_tool_server):
    response = logged_in(member).get(page_of(team))
    assert response.status_code == 200
    page = response.content.decode()
    assert "helpdesk" in page and "get_weather" in page
    assert "Add a tool server" not in page and "Save tools" not in page
    assert "Refresh tools" not in page


def test_members_may_not_post(member, team, team_tool_server, mcp_server):
    client, base = logged_in(member), f"{page_of(team)}{team_tool_server.pk}/"
    assert client.post(page_of(team), {"name": "x", "url": mcp_server.url}).status_code == 403
    for action in ("", "tools/", "refresh/", "remove/"):
        assert client.post(base + action, {"name": "x"}).status_code == 403
    assert ToolServer.objects.count() == 1 and Tool.objects.filter(enabled=True).count() == 4


def test_outsiders_get_404(outsider, team, team_tool_server):
    client, base = logged_in(outsider), f"{page_of(team)}{team_tool_server.pk}/"
    assert client.get(page_of(team)).status_code == 404
    for action in ("", "tools/", "refresh/", "remove/"):
        assert client.post(base + action).status_code == 404
    assert ToolServer.objects.count() == 1


def test_anonymous_is_sent_to_log_in(client, team):
    response = client.get(page_of(team))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_down_server_is_shown_with_its_reason(owner_client, team, team_tool_server):
    ToolServer.objects.filter(pk=team_tool_server.pk).update(
        status=ServerStatus.DOWN, last_error="Could not connect to the tool server at x"
    )
    page = owner_client.get(page_of(team)).content.decode()
    assert "status-down" in page and "Could not connect to the tool server at x" in page


def test_the_page_says_when_more_tools_are_enabled_than_a_request_carries(
    owner_client, team, team_tool_server
):
    assert "each chat request offers" not in owner_client.get(page_of(team)).content.decode()
    Tool.objects.bulk_create(
        Tool(server=team_tool_server, name=f"extra_{number:03}", read_only=True)
        for number in range(130)
    )
    page = owner_client.get(page_of(team)).content.decode()
    assert "134 tools are enabled on servers that are up, and each chat request offers" in page
    assert "only the first 128" in page


def test_the_page_takes_the_same_queries_whatever_the_servers(owner_client, team, team_tool_server):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert owner_client.get(page_of(team)).status_code == 200
        return len(queries)

    one = count()
    for n in range(3):
        extra = ToolServer.objects.create(team=team, name=f"more{n}", url="https://9.9.9.9/")
        Tool.objects.create(server=extra, name="lookup", input_schema={"type": "object"})
    assert count() == one
