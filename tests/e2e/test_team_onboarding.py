"""A new site: the first signup becomes its admin, sets up a team, and brings in a colleague."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
from tests.e2e.journeys import (
    assert_clean,
    expect_socket_open,
    new_context,
    sign_up,
    watched_page,
)

pytestmark = pytest.mark.browser

PROMPT_NAME = "Haiku poet"
PROMPT_TEXT = "Answer every question as a haiku about llamas."


def create_team_with_prompt(page) -> str:
    """From the chat page: create a team, add a prompt to it; return the team's URL."""
    page.get_by_role("link", name="Teams").click()
    page.get_by_label("Name").fill("Llama Labs")
    page.get_by_role("button", name="Create team").click()
    page.wait_for_url(re.compile(r"/teams/\d+/$"))
    team_url = page.url
    expect(page.get_by_text("Your role: Owner")).to_be_visible()
    page.get_by_role("navigation", name="Team sections").get_by_role("link", name="Prompts").click()
    page.get_by_label("Name").fill(PROMPT_NAME)
    page.get_by_label("Content").fill(PROMPT_TEXT)
    page.get_by_role("button", name="Add prompt").click()
    prompt = page.locator(".prompt-item").filter(has=page.get_by_role("heading", name=PROMPT_NAME))
    expect(prompt.locator(".prompt-text")).to_have_text(PROMPT_TEXT)
    return team_url


def create_invitation_link(page, team_url: str) -> str:
    page.goto(team_url + "members/")
    expect(page.get_by_label("Role", exact=True)).to_have_value("member")
    page.get_by_role("button", name="Create invitation").click()
    link = page.get_by_label("Invitation link")
    expect(link).to_have_value(re.compile(r"/invite/[^/]+/$"))
    return link.input_value()


def join_by_link(page, link: str) -> None:
    """Someone without an account opens the link and signs up from the login page: joined."""
    page.goto(link)
    page.wait_for_url(re.compile(r"/accounts/login/\?next=/invite/"))
    page.get_by_role("link", name="Sign up").click()
    sign_up(page, "grace", "grace@example.com")


def expect_site_admin(context, admin: bool) -> None:
    # Its own page: the admin's pages have no icon link, so Chromium's /favicon.ico 404s there.
    page = context.new_page()
    page.goto("/admin/")
    if admin:
        expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    else:
        expect(page.get_by_text("but are not authorized to access this page")).to_be_visible()
    page.close()


def test_first_signup_administers_the_site_and_invites_a_member_who_chats_with_the_prompt(
    browser, fresh_server, sim
):
    origin = fresh_server.url
    admin_context = new_context(browser, origin)
    member_context = new_context(browser, origin)
    try:
        # The very first account, signed up through the form, is the site admin.
        admin, admin_watch = watched_page(admin_context, origin)
        admin.goto("/")
        admin.wait_for_url("**/accounts/login/?next=/")
        admin.get_by_role("link", name="Sign up").click()
        sign_up(admin, "ada", "ada@example.com")
        admin.wait_for_url(origin + "/")
        expect_socket_open(admin)
        expect_site_admin(admin_context, True)

        team_url = create_team_with_prompt(admin)
        link = create_invitation_link(admin, team_url)

        # The second person joins by the link and is a member, not an admin of the site.
        member, member_watch = watched_page(member_context, origin)
        join_by_link(member, link)
        member.wait_for_url(team_url)
        expect(member.get_by_text("Welcome to Llama Labs.")).to_be_visible()
        expect(member.get_by_text("Your role: Member")).to_be_visible()
        expect_site_admin(member_context, False)

        # In the chat the team is current and its prompt is offered; picking it reaches the model.
        member.goto("/")
        expect_socket_open(member)
        expect(member.locator(".team-chip")).to_have_text("Llama Labs")
        picker = member.get_by_label("System prompt")
        expect(picker.locator("option")).to_have_text(["No system prompt", PROMPT_NAME])
        picker.select_option(label=PROMPT_NAME)
        chat = ChatPage(member)
        chat.send("Tell me about the Andes")
        chat.wait_for_status("complete")
        assert "turn 1 of the conversation with a system prompt" in chat.answer_content()
        assert sim.requests[-1]["messages"] == [
            {"role": "system", "content": PROMPT_TEXT},
            {"role": "user", "content": "Tell me about the Andes"},
        ]
        member.locator("#system-prompt summary").click()
        expect(member.locator("#system-prompt-text")).to_have_text(PROMPT_TEXT)

        # The admin sees the new member and the tokens the member's answer used.
        admin.goto(team_url + "members/")
        expect(admin.get_by_label("Role of grace")).to_have_value("member")
        admin.goto(team_url + "usage/")
        by_person = admin.locator(".team-card", has=admin.get_by_role("heading", name="By person"))
        expect(by_person.get_by_role("row").filter(has_text="grace")).to_have_count(1)
        assert_clean(admin_watch)
        assert_clean(member_watch)
    finally:
        admin_context.close()
        member_context.close()
