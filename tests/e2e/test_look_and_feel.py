"""Using the chat without a mouse, in the dark theme, and on a phone."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, log_in
from tests.browser.conftest import PHONE
from tests.e2e.contrast import contrast_of, faint_field_edges, unreadable_text
from tests.e2e.journeys import (
    assert_clean,
    expect_socket_open,
    new_context,
    tab_to,
    watched_page,
)

pytestmark = pytest.mark.browser

# Text on the chat page whose contrast with what is behind it must pass WCAG AA (4.5:1).
READABLE = {
    "answer text": ".message-assistant .markdown p",
    "answer list": ".message-assistant .markdown li",
    "question": ".message-user .bubble",
    "code": ".code-block code",
    "code language": ".code-language",
    "answer details": ".message-meta",
    "title": "#conversation-title",
    "conversation in the list": ".conversation-link",
    "message box": "#composer-input",
    "hint under the box": "#composer-hint",
    "sidebar links": ".sidebar-links a",
}

# Every kind of token the highlighter colours; samples of each are added to a rendered block.
TOKENS = ["keyword", "title", "attr", "string", "built_in", "comment", "name", "bullet"]
TOKENS += ["section", "addition", "deletion"]
READABLE |= {f"code {token}": f".code-block [data-sample={token}]" for token in TOKENS}


def add_token_samples(page) -> None:
    # Once highlight.js (fetched with the first code shown) has coloured the block: its arrival
    # draws the answer again, which would drop samples added before.
    expect(page.locator(".code-block code [class^='hljs-']").first).to_be_visible()
    page.evaluate(
        """(tokens) => {
            const code = document.querySelector('.code-block code');
            for (const token of tokens) {
                const sample = document.createElement('span');
                sample.className = `hljs-${token}`;
                sample.dataset.sample = token;
                sample.textContent = ` ${token} `;
                code.append(sample);
            }
        }""",
        TOKENS,
    )


def overflows_horizontally(page) -> bool:
    return page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )


def focus_is_visible(page) -> bool:
    """The focused element draws a focus ring (an outline or a box-shadow)."""
    return page.evaluate(
        """() => {
            const style = getComputedStyle(document.activeElement);
            const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
            return outline || style.boxShadow !== 'none';
        }"""
    )


def test_keyboard_only_from_login_to_answers(page, user, sim):
    page.goto("/accounts/login/")
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type(user.username)
    page.keyboard.press("Tab")
    page.keyboard.type(user.password)
    page.keyboard.press("Enter")
    page.wait_for_url("**/")
    expect_socket_open(page)
    chat = ChatPage(page)
    expect(chat.input).to_be_focused()
    page.keyboard.type("Typed without a mouse")
    page.keyboard.press("Enter")
    chat.wait_for_status("complete")
    first_url = page.url

    # Back to the sidebar for a new chat, then to the first conversation again.
    tab_to(page, page.get_by_role("button", name="New chat"), key="Shift+Tab")
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/$"))
    expect(chat.input).to_be_focused()
    page.keyboard.type("A second question")
    page.keyboard.press("Enter")
    chat.wait_for_status("complete")
    expect(page.locator(".conversation-link")).to_have_count(2)
    tab_to(page, page.get_by_role("link", name="Typed without a mouse"), key="Shift+Tab")
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    page.wait_for_url(first_url)
    expect(chat.questions.locator(".bubble")).to_have_text(["Typed without a mouse"])

    # The answer's own buttons and the theme toggle are reachable too.
    tab_to(page, chat.last_answer().get_by_role("button", name="Regenerate"))
    assert focus_is_visible(page)
    tab_to(page, page.get_by_role("button", name="Dark theme"))
    assert focus_is_visible(page)
    page.keyboard.press("Space")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")


def test_dark_theme_darkens_the_chat_and_keeps_its_text_and_code_readable(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("Show me **code** in the dark")
    chat.wait_for_status("complete")
    add_token_samples(page)
    light = contrast_of(page, READABLE)
    page.get_by_role("button", name="Dark theme").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    dark = contrast_of(page, READABLE)
    for name in READABLE:
        assert light[name]["background"] > 0.5, f"{name}: the light theme is light"
        assert dark[name]["background"] < 0.1, f"{name}: the dark theme is dark"
    too_faint = {
        f"{theme}: {name}": round(report[name]["ratio"], 2)
        for theme, report in [("light", light), ("dark", dark)]
        for name in READABLE
        if report[name]["ratio"] < 4.5
    }
    assert too_faint == {}


def team_with_everything(page) -> str:
    """A new team with a default, locked prompt and an open invitation; returns its URL."""
    page.goto("/teams/")
    page.get_by_label("Name").fill("Readable team")
    page.get_by_role("button", name="Create team").click()
    page.wait_for_url(re.compile(r"/teams/\d+/$"))
    team_url = page.url
    page.goto(team_url + "prompts/")
    page.get_by_label("Name").fill("Reviewer")
    page.get_by_label("Content").fill("Review code carefully.")
    page.get_by_label("Default for new chats").check()
    page.get_by_label("Locked").check()
    page.get_by_role("button", name="Add prompt").click()
    expect(page.locator(".prompt-item")).to_have_count(1)
    page.goto(team_url + "members/")
    page.get_by_role("button", name="Create invitation").click()
    expect(page.get_by_label("Invitation link")).to_be_visible()
    return team_url


def audit_in_both_themes(page, visits: list, audit=unreadable_text) -> dict[str, list[str]]:
    """Run each visit (a path, or a function that brings the page to a state) in both themes,
    then `audit` (the page's unreadable text, by default)."""
    found = {}
    for theme in ["light", "dark"]:
        page.evaluate(f"localStorage.setItem('theme', {theme!r})")
        for visit in visits:
            label = visit if isinstance(visit, str) else visit.__doc__
            if isinstance(visit, str):
                page.goto(visit)
            else:
                visit()
            expect(page.locator("html")).to_have_attribute("data-theme", theme)
            if problems := audit(page):
                found[f"{theme}: {label}"] = problems
    return found


def test_every_page_keeps_its_text_readable_in_both_themes(logged_in_page, sim):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("A question with **bold** words")
    chat.wait_for_status("complete")
    answered = page.url
    page.get_by_role("button", name="New chat").click()
    chat.send("[sim:fault=401] This one fails")
    chat.wait_for_status("error")
    failed = page.url
    team_url = team_with_everything(page)

    def answered_chat():
        """the chat with an answer"""
        page.goto(answered)
        chat.wait_for_status("complete")

    def failed_chat():
        """the chat with a failed answer"""
        page.goto(failed)
        chat.wait_for_status("error")

    def settings_with_errors():
        """the settings page with errors"""
        page.goto("/settings/")
        page.get_by_label("Top p").fill("3")
        page.get_by_role("button", name="Save settings").click()
        expect(page.get_by_text("Top p must be a number from 0 to 1")).to_be_visible()

    sections = ["", "members/", "prompts/", "policy/", "provider/", "usage/", "audit/"]
    visits = [answered_chat, failed_chat, "/settings/", settings_with_errors, "/teams/"]
    found = audit_in_both_themes(page, visits + [team_url + section for section in sections])

    def signup_with_errors():
        """the signup page with errors (invitation only here: the policy's refusal alone)"""
        page.goto("/accounts/signup/")
        page.get_by_role("button", name="Sign up").click()
        expect(page.locator(".form-error").first).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")
    found |= audit_in_both_themes(page, ["/accounts/login/", signup_with_errors])
    assert found == {}


def test_every_field_stands_out_from_its_page_in_both_themes(logged_in_page, sim):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("A question to edit")
    chat.wait_for_status("complete")
    answered = page.url
    team_url = team_with_everything(page)

    def chat_with_its_boxes_open():
        """the chat with its settings panel and an edit box open"""
        page.goto(answered)
        chat.wait_for_status("complete")
        page.get_by_role("button", name="This chat settings").click()
        expect(page.get_by_label("Temperature")).to_be_visible()
        page.keyboard.press("Escape")
        chat.questions.last.get_by_role("button", name="Edit this question").click()
        expect(page.locator(".edit-input")).to_be_visible()

    def settings_panel():
        """the chat's settings panel"""
        page.goto(answered)
        page.get_by_role("button", name="This chat settings").click()
        expect(page.get_by_label("Temperature")).to_be_visible()

    def settings_with_a_new_key():
        """the settings page showing a new API key"""
        page.goto("/settings/")
        page.get_by_label("Name").fill("laptop")
        page.get_by_role("button", name="Create key").click()
        expect(page.get_by_label("The new API key")).to_be_visible()

    sections = ["", "members/", "prompts/", "policy/"]
    visits = [chat_with_its_boxes_open, settings_panel, settings_with_a_new_key, "/teams/"]
    visits += [team_url + section for section in sections]
    found = audit_in_both_themes(page, visits, audit=faint_field_edges)
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")
    found |= audit_in_both_themes(page, ["/accounts/login/"], audit=faint_field_edges)
    assert found == {}


def test_phone_width_chat_with_the_drawer(browser, app_server, user, sim):
    context = new_context(browser, app_server.url, viewport=PHONE, has_touch=True)
    try:
        page, watch = watched_page(context, app_server.url)
        log_in(page, user)
        chat = ChatPage(page)
        sidebar = page.get_by_role("complementary", name="Conversations")
        expect(sidebar).to_be_hidden()
        chat.send("A question from the bus, with a long code line please")
        chat.wait_for_status("complete")
        assert not overflows_horizontally(page)  # wide code scrolls inside its block
        expect(chat.input).to_be_in_viewport()

        # From the drawer: a new chat, then back to the first conversation.
        opener = page.get_by_role("button", name="Open conversations")
        opener.tap()
        expect(sidebar).to_be_in_viewport()
        page.get_by_role("button", name="New chat").tap()
        expect(sidebar).to_be_hidden()
        chat.send("Second question on the phone")
        chat.wait_for_status("complete")
        opener.tap()
        first = sidebar.get_by_role("link", name="A question from the bus")
        expect(sidebar.locator(".conversation-link")).to_have_count(2)
        first.tap()
        expect(sidebar).to_be_hidden()
        expect(chat.questions.locator(".bubble")).to_have_text(
            ["A question from the bus, with a long code line please"]
        )

        # The other pages fit the phone too.
        for path in ["/settings/", "/teams/"]:
            page.goto(path)
            assert not overflows_horizontally(page), path
        assert_clean(watch)
    finally:
        context.close()
