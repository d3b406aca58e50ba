"""The team's Tools page in real Chromium against a live daphne and a real MCP server."""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import log_in
from tests.support.mcp_server import run_tool_server

pytestmark = pytest.mark.browser


def add_server_in_the_database(app_server, team_id: int, url: str) -> None:
    """The live server refuses loopback URLs (as a real site does): the test's MCP server, on
    loopback, is added through the server's own actions with private addresses allowed.
    Logging is off meanwhile: the worker answers on stdout, where the site logs."""
    app_server.run_python(
        "import logging\n"
        "logging.disable(logging.CRITICAL)\n"
        "from asgiref.sync import async_to_sync\n"
        "from django.conf import settings\n"
        "from chatapp.tools.actions import fetch_listing, store_listing\n"
        "from chatapp.tools.models import ToolServer\n"
        "settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True\n"
        f"server = ToolServer.objects.create(team_id={team_id}, name='helpdesk', url={url!r})\n"
        "store_listing(server, async_to_sync(fetch_listing)(server.url, '', 30))\n"
        "settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = False\n"
        "logging.disable(logging.NOTSET)\n"
    )


def team_with_a_server(page, app_server, user, url: str) -> int:
    """Signs in, creates a team on its page and adds the tool server at url to it."""
    log_in(page, user)
    page.goto("/teams/")
    page.get_by_label("Name").fill("Tools team")
    page.get_by_role("button", name="Create team").click()
    page.wait_for_url(re.compile(r"/teams/\d+/$"))
    team_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    add_server_in_the_database(app_server, team_id, url)
    return team_id


def test_tools_page_lists_toggles_refuses_refreshes_and_removes(
    page, page_watch, app_server, user, sim, mcp_server, screenshot
):
    team_with_a_server(page, app_server, user, mcp_server.url)

    page.get_by_role("navigation", name="Team sections").get_by_role("link", name="Tools").click()
    server = page.get_by_role("region", name="helpdesk")
    expect(server.locator(".status-up")).to_have_text("Up")
    weather = server.get_by_role("row").filter(has_text="get_weather")
    expect(weather).to_contain_text("Today's weather in a city.")
    expect(weather).to_contain_text("read-only")
    ticket = server.get_by_role("row").filter(has_text="create_ticket")
    expect(ticket).to_contain_text("changes things: always asks")
    expect(ticket.get_by_label("create_ticket always asks before each call")).to_be_checked()
    expect(ticket.get_by_label("create_ticket always asks before each call")).to_be_disabled()
    weather.get_by_text("Input schema").click()
    expect(weather.locator("pre")).to_contain_text('"city"')

    # Turn broken off and ask before get_weather.
    server.get_by_role("row").filter(has_text="broken").get_by_label("broken enabled").uncheck()
    weather.get_by_label("Ask before each call of get_weather").check()
    server.get_by_role("button", name="Save tools").click()
    expect(page.get_by_text("Saved the tools of helpdesk.")).to_be_visible()
    expect(page.get_by_label("broken enabled")).not_to_be_checked()
    expect(page.get_by_label("Ask before each call of get_weather")).to_be_checked()
    screenshot(page, "tools-page", full_page=True)

    # The live site refuses a loopback address, and says why.
    add = page.get_by_role("region", name="Add a tool server")
    add.get_by_label("Name").fill("local")
    add.get_by_label("URL").fill("https://127.0.0.1:9/mcp")
    add.get_by_role("button", name="Add server").click()
    expect(page.get_by_text("The tool server 127.0.0.1 is not a public address")).to_be_visible()
    expect(page.get_by_role("region", name="local")).to_have_count(0)

    # A refresh under the guard (plain http is refused here) shows the server as down.
    page.get_by_role("region", name="helpdesk").get_by_role("button", name="Refresh tools").click()
    expect(page.get_by_text("Refreshed helpdesk, but it is down")).to_be_visible()
    server = page.get_by_role("region", name="helpdesk")
    expect(server.locator(".status-down")).to_have_text("Down")
    expect(server.locator(".tool-server-error")).to_have_text("Tool server URLs must use https.")
    screenshot(page, "tools-page-down", full_page=True)

    page.once("dialog", lambda dialog: dialog.accept())
    server.get_by_role("button", name="Remove").click()
    expect(page.get_by_text("Removed helpdesk.")).to_be_visible()
    expect(page.get_by_text("This team has no tool servers yet.")).to_be_visible()
    # The one error the console reports is the refused form's answer, a 400 by design.
    assert page_watch.console_errors == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    ]
    assert page_watch.page_errors == []


def many_tools() -> str:
    """A tools/list answer of 120 tools, every third with a description of 3,000 characters."""
    tools = [
        {
            "name": f"tool_{number:03}",
            "description": "Looks things up. " * 180 if number % 3 == 0 else "Looks things up.",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": True},
        }
        for number in range(120)
    ]
    return json.dumps(tools)


@pytest.mark.parametrize("width", [390, 1280])
def test_a_server_with_many_long_described_tools_stays_usable(
    page, app_server, user, sim, screenshot, width
):
    """Long descriptions are folded after their start (each whole one would make the page
    tens of screens long), and Save tools stays in sight while the list scrolls."""
    page.set_viewport_size({"width": width, "height": 844})
    with run_tool_server(tools=many_tools()) as running:
        team_id = team_with_a_server(page, app_server, user, running.url)
    page.goto(f"/teams/{team_id}/tools/")
    server = page.get_by_role("region", name="helpdesk")
    first = server.get_by_role("row").filter(has_text="tool_000")
    first.scroll_into_view_if_needed()
    expect(server.get_by_role("button", name="Save tools")).to_be_in_viewport()
    whole = first.get_by_text("Looks things up. " * 180, exact=True)
    expect(whole).to_be_hidden()
    expect(first).to_contain_text("Looks things up. Looks things up.")
    screenshot(page, f"tools-page-many-{width}-folded")
    first.get_by_text("Full description").click()
    expect(whole).to_be_visible()
    screenshot(page, f"tools-page-many-{width}")
    short = server.get_by_role("row").filter(has_text="tool_001")
    expect(short.get_by_text("Looks things up.", exact=True)).to_be_visible()
    expect(short.get_by_text("Full description")).to_have_count(0)
    # The rest of the page is still reached: the last tool, then the server's other actions.
    server.get_by_role("row").filter(has_text="tool_119").get_by_label("tool_119 enabled").uncheck()
    server.get_by_role("button", name="Save tools").click()
    expect(page.get_by_text("Saved the tools of helpdesk.")).to_be_visible()
    expect(page.get_by_label("tool_119 enabled")).not_to_be_checked()
