"""Team pages in real Chromium against a live daphne: forms, invitations, confirmations, CSP."""

import re

import pytest

from tests.browser.chat_page import BrowserUser, log_in

pytestmark = pytest.mark.browser
SECTIONS = ["", "members/", "prompts/", "policy/", "provider/", "usage/", "audit/"]


def create_team(page, name: str) -> str:
    page.goto("/teams/")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create team").click()
    page.wait_for_url(re.compile(r"/teams/\d+/$"))
    return page.url


def test_every_team_page_renders_without_console_errors(page, page_watch, user, sim):
    log_in(page, user)
    team_url = create_team(page, "Browser team")
    for section in SECTIONS:
        page.goto(team_url + section)
        assert page.get_by_role("heading", name="Browser team").is_visible(), section
        assert page_watch.console_errors == [], section
        assert page_watch.page_errors == [], section
    assert page_watch.offsite_requests == []


def test_invite_accept_and_remove_with_confirmation(page, context, browser, app_server, user, sim):
    log_in(page, user)
    team_url = create_team(page, "Invite team")
    page.goto(team_url + "members/")
    page.get_by_role("button", name="Create invitation").click()
    link = page.get_by_label("Invitation link").input_value()

    guest = BrowserUser(user.username + "_guest")
    app_server.create_user(guest.username)
    other = browser.new_context(base_url=app_server.url)
    guest_page = other.new_page()
    guest_page.goto(link)
    guest_page.wait_for_url(re.compile(r"/accounts/login/\?next=/invite/"))
    guest_page.get_by_label("Username").fill(guest.username)
    guest_page.get_by_label("Password").fill(guest.password)
    guest_page.get_by_role("button", name="Log in").click()
    guest_page.get_by_role("button", name="Accept and join").click()
    guest_page.wait_for_url(team_url)
    assert guest_page.get_by_text("Your role: Member").is_visible()
    other.close()

    page.goto(team_url + "members/")
    row = page.get_by_role("row").filter(has_text=guest.username)
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Remove").click()
    assert page.get_by_role("row").filter(has_text=guest.username).count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Remove").click()
    page.wait_for_load_state()
    assert page.get_by_text(f"Removed {guest.username} from the team.").is_visible()
    assert page.get_by_role("row").filter(has_text=guest.username).count() == 0
