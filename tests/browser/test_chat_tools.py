"""Tool calls on the chat page: blocks per call, approval granted and denied, after a reload.

The team's tools come from a real MCP server on loopback (tests/support/mcp_server.py), added as
the team's tool server; the live site is told that private addresses are allowed."""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage

pytestmark = pytest.mark.browser

TOO_FAST = "You are sending messages too fast: wait a minute and retry."


@pytest.fixture(scope="module")
def app_server(tools_app_server):
    return tools_app_server


@pytest.fixture(autouse=True)
def team_tools(app_server, user, tool_server):
    """The user's team has the MCP server as its tool server, its tools listed."""
    app_server.add_tool_server(user.username, tool_server.url)


def test_a_call_and_its_result_show_as_a_block_that_survives_a_reload(
    logged_in_page, page_watch, screenshot
):
    chat = ChatPage(logged_in_page)
    chat.send("Weather? [sim:call=get_weather+broken args=city:Paris]")
    chat.wait_for_status("complete")

    answer = chat.last_answer()
    calls = answer.locator(".tool-call")
    expect(calls).to_have_count(2)
    weather, broken = calls.nth(0), calls.nth(1)
    expect(weather.locator(".tool-call-name")).to_have_text("get_weather")
    expect(weather.locator(".tool-call-state")).to_contain_text("done in")
    expect(broken).to_have_class("tool-call is-error")
    weather.locator("summary").click()
    expect(weather.locator(".tool-call-arguments")).to_have_text('{\n  "city": "Paris"\n}')
    expect(weather.locator(".tool-call-result")).to_have_text("Sunny in Paris, 21 °C")
    expect(answer.locator(".markdown")).to_contain_text("Sunny in Paris, 21 °C")
    screenshot(logged_in_page, "tool-calls")

    logged_in_page.reload()
    chat.wait_for_status("complete")
    calls = chat.last_answer().locator(".tool-call")
    expect(calls).to_have_count(2)
    expect(calls.nth(1).locator(".tool-call-state")).to_contain_text("failed")
    assert page_watch.page_errors == [] and page_watch.console_errors == []


def test_approval_granted_runs_the_call(logged_in_page, page_watch, screenshot, tool_server):
    chat = ChatPage(logged_in_page)
    chat.send("File it [sim:call=create_ticket args=title:<b>Printer</b>]")
    call = chat.last_answer().locator(".tool-call")
    expect(call).to_have_attribute("data-status", "awaiting_approval")
    expect(call).to_have_attribute("open", "")
    expect(call.locator(".tool-call-arguments")).to_contain_text('"title": "<b>Printer</b>"')
    screenshot(logged_in_page, "tool-call-approval")

    # A reload while it waits shows the question again.
    logged_in_page.reload()
    call = chat.last_answer().locator(".tool-call")
    expect(call).to_have_attribute("data-status", "awaiting_approval")
    call.get_by_role("button", name="Approve").click()
    chat.wait_for_status("complete")
    created = re.compile(r"Created ticket #\d+: <b>Printer</b>")
    expect(call.locator(".tool-call-result")).to_have_text(created)
    expect(call.locator(".tool-call-approval")).to_be_hidden()
    expect(chat.last_answer().locator(".markdown")).to_contain_text(created)
    assert ("create_ticket", {"title": "<b>Printer</b>"}) in tool_server.calls
    assert page_watch.page_errors == [] and page_watch.console_errors == []


@pytest.mark.parametrize("decision", ["Approve", "Deny"])
def test_deciding_from_the_keyboard_leaves_focus_in_the_composer(logged_in_page, decision):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("File it [sim:call=create_ticket args=title:Printer]")
    call = chat.last_answer().locator(".tool-call")
    expect(call).to_have_attribute("data-status", "awaiting_approval")
    call.get_by_role("button", name=decision).focus()
    page.keyboard.press("Enter")
    # The buttons are disabled, then gone: the keyboard is not lost to the top of the page.
    expect(chat.input).to_be_focused()
    chat.wait_for_status("complete")
    expect(chat.input).to_be_focused()


def test_a_refused_decision_gives_the_buttons_back(logged_in_page, tool_server):
    """The server refuses the first approval (as it does past the frames-per-minute limit):
    the call still waits, and Approve works again."""
    page = logged_in_page
    refused: list[dict] = []

    def refuse_the_first_decision(route) -> None:
        server = route.connect_to_server()

        def from_page(message) -> None:
            frame = json.loads(message) if isinstance(message, str) else {}
            if frame.get("type") == "chat.tool_decision" and not refused:
                refused.append(frame)
                error = {"code": "rate_limited", "message": TOO_FAST, "retryable": True}
                route.send(json.dumps({"type": "error", "request_id": None, "error": error}))
                return
            server.send(message)

        route.on_message(from_page)

    page.route_web_socket(re.compile(r"/ws/chat/$"), refuse_the_first_decision)
    page.reload()
    chat = ChatPage(page)
    chat.send("File it [sim:call=create_ticket args=title:Again]")
    call = chat.last_answer().locator(".tool-call")
    expect(call).to_have_attribute("data-status", "awaiting_approval")
    approve = call.get_by_role("button", name="Approve")
    approve.click()
    expect(page.get_by_text(TOO_FAST)).to_be_visible()
    expect(approve).to_be_enabled()
    approve.click()
    chat.wait_for_status("complete")
    assert len(refused) == 1 and ("create_ticket", {"title": "Again"}) in tool_server.calls


def test_approval_denied_tells_the_model(logged_in_page, page_watch, tool_server):
    chat = ChatPage(logged_in_page)
    chat.send("File it [sim:call=create_ticket args=title:Denied_printer]")
    call = chat.last_answer().locator(".tool-call")
    expect(call).to_have_attribute("data-status", "awaiting_approval")
    call.get_by_role("button", name="Deny").click()
    chat.wait_for_status("complete")
    expect(call).to_have_class("tool-call is-error")
    expect(call.locator(".tool-call-result")).to_have_text("The user declined this call.")
    expect(chat.last_answer().locator(".markdown")).to_contain_text("declined")
    assert ("create_ticket", {"title": "Denied_printer"}) not in tool_server.calls
    assert page_watch.page_errors == [] and page_watch.console_errors == []


def test_tools_can_be_turned_off_for_a_conversation(logged_in_page):
    chat = ChatPage(logged_in_page)
    logged_in_page.locator("#settings-toggle").click()
    logged_in_page.get_by_label("Use the team's tools").uncheck()
    logged_in_page.locator("#settings-panel").get_by_role("button", name="Done").click()
    chat.send("Weather? [sim:call=get_weather]")
    chat.wait_for_status("complete")
    expect(chat.last_answer().locator(".tool-call")).to_have_count(0)
    assert chat.api(f"/api/conversations/{chat.conversation_id()}/")["settings"]["tools"] is False


def test_an_answer_out_of_budget_after_its_tools_says_so_with_its_call_shown(
    app_server, user, logged_in_page, page_watch, screenshot
):
    """The team had one token left: the model's turn after the call is not asked for."""
    app_server.run_python(
        "from django.contrib.auth import get_user_model\n"
        "from chatapp.teams.actions import record_usage\n"
        "from chatapp.teams.models import Team, TeamPolicy\n"
        f"owner = get_user_model().objects.get(username={user.username!r})\n"
        "team = Team.objects.get(personal_owner=owner)\n"
        "TeamPolicy.objects.update_or_create(team=team, defaults={'monthly_token_budget': 5000})\n"
        "record_usage(team, owner, 'm', 4999, 0)\n"
    )
    chat = ChatPage(logged_in_page)
    chat.send("Weather? [sim:call=get_weather args=city:Oslo]")
    chat.wait_for_status("interrupted")
    answer = chat.last_answer()
    expect(answer.locator(".tool-call")).to_have_count(1)
    expect(answer.locator(".tool-call-state")).to_contain_text("done in")
    refusal = re.compile(r"monthly budget of 5,000 tokens \(5,\d{3} used\).*before the model read")
    expect(answer).to_contain_text(refusal)
    expect(answer.get_by_role("button", name="Retry")).to_be_hidden()
    screenshot(logged_in_page, "tool-call-out-of-budget")

    logged_in_page.reload()
    chat.wait_for_status("interrupted")
    expect(chat.last_answer().locator(".tool-call")).to_have_count(1)
    expect(chat.last_answer()).to_contain_text(refusal)
    assert page_watch.page_errors == [] and page_watch.console_errors == []
