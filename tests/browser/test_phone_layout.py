"""The chat and team pages on a phone held upright or sideways, with a touch screen."""

from contextlib import contextmanager

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, log_in
from tests.browser.conftest import WAIT_MS
from tests.browser.test_chat_attachments import encoded, paste, tray

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
SMALL_PHONE = {"width": 360, "height": 740}
LANDSCAPE = {"width": 844, "height": 390}
# A phone held upright with its on-screen keyboard open.
KEYBOARD_OPEN = {"width": 390, "height": 400}
# The smallest touch target Apple's and Android's guidelines ask for, in CSS pixels.
TOUCH_TARGET = 44


@contextmanager
def touch_page(browser, app_server, user, viewport):
    """A page on a touch screen (a coarse pointer) of this size, signed in as `user` (or not
    signed in, for None)."""
    context = browser.new_context(
        base_url=app_server.url, viewport=viewport, has_touch=True, is_mobile=True
    )
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        if user is not None:
            log_in(page, user)
        yield page
    finally:
        context.close()


def too_small(controls: dict) -> dict:
    """The controls (by name) narrower or shorter than a touch target, with their sizes."""
    small = {}
    for name, control in controls.items():
        box = control.bounding_box()
        if box["height"] < TOUCH_TARGET or box["width"] < TOUCH_TARGET:
            small[name] = (round(box["width"]), round(box["height"]))
    return small


def test_the_team_overview_keeps_long_model_names_inside_its_card(
    browser, app_server, user, sim, screenshot
):
    with touch_page(browser, app_server, user, SMALL_PHONE) as page:
        page.goto("/teams/")
        page.locator(".team-table a").first.click()
        facts = page.locator(".team-facts")
        expect(facts).to_contain_text("Llama-4-Maverick")
        screenshot(page, "team-overview-phone")
        card = facts.bounding_box()
        for value in facts.locator("dd").all():
            box = value.bounding_box()
            assert box["x"] + box["width"] <= card["x"] + card["width"] + 0.5, value.inner_text()
        assert page.evaluate("document.documentElement.scrollWidth") <= SMALL_PHONE["width"]


def test_a_phone_on_its_side_shows_the_conversations_and_reaches_log_out(
    browser, app_server, user, sim, screenshot
):
    with touch_page(browser, app_server, user, LANDSCAPE) as page:
        chat = ChatPage(page)
        chat.send("Kept in the sidebar")
        chat.wait_for_status("complete")
        sidebar = page.locator("#sidebar")
        expect(sidebar.locator(".conversation-link").first).to_be_in_viewport(ratio=1)
        screenshot(page, "sidebar-landscape")
        log_out = sidebar.get_by_role("button", name="Log out")
        log_out.scroll_into_view_if_needed()
        expect(log_out).to_be_in_viewport(ratio=1)


def test_the_chat_controls_are_big_enough_to_tap(browser, app_server, user, sim, screenshot):
    with touch_page(browser, app_server, user, {"width": 390, "height": 844}) as page:
        chat = ChatPage(page)
        chat.send("Tap targets")
        chat.wait_for_status("complete")
        answer = chat.last_answer()
        controls = {
            "menu": page.get_by_role("button", name="Open conversations"),
            "download": page.get_by_role("link", name="Download as Markdown"),
            "share": page.get_by_role("link", name="Share in the team"),
            "model": page.locator("#model-picker"),
            "chat settings": page.locator("#settings-toggle"),
            "attach": page.get_by_role("button", name="Attach files"),
            "send": chat.send_button,
            "copy answer": answer.get_by_role("button", name="Copy answer"),
            "regenerate": answer.get_by_role("button", name="Regenerate"),
            "edit": chat.questions.last.get_by_role("button", name="Edit this question"),
        }
        screenshot(page, "touch-targets-phone")
        small = {}
        for name, control in controls.items():
            box = control.bounding_box()
            if box["height"] < TOUCH_TARGET or box["width"] < TOUCH_TARGET:
                small[name] = (round(box["width"]), round(box["height"]))
        menu, title = (
            controls["menu"].bounding_box(),
            page.locator("#conversation-title").bounding_box(),
        )
        assert menu["y"] <= title["y"] + title["height"] / 2 <= menu["y"] + menu["height"]
        page.get_by_role("button", name="Open conversations").click()
        row_menu = page.locator(".conversation-item .item-menu-button").first
        expect(row_menu).to_be_in_viewport()
        box = row_menu.bounding_box()
        if box["height"] < TOUCH_TARGET or box["width"] < TOUCH_TARGET:
            small["conversation actions"] = (round(box["width"]), round(box["height"]))
        links = page.locator(".sidebar-links")
        small |= too_small(
            {
                "teams link": links.get_by_role("link", name="Teams"),
                "shortcuts": links.get_by_role("button", name="Shortcuts"),
            }
        )
        assert small == {}
        assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_the_sign_in_pages_are_big_enough_to_tap(browser, app_server, screenshot):
    with touch_page(browser, app_server, None, PHONE) as page:
        page.goto("/accounts/login/")
        screenshot(page, "log-in-phone")
        small = too_small(
            {
                "log in": page.get_by_role("button", name="Log in"),
                "sign up link": page.get_by_role("link", name="Sign up"),
            }
        )
        page.goto("/accounts/signup/")
        small |= too_small(
            {
                "sign up": page.get_by_role("button", name="Sign up"),
                "log in link": page.get_by_role("link", name="Log in"),
            }
        )
        assert small == {}


def test_the_site_pages_are_big_enough_to_tap(browser, app_server, user, screenshot):
    with touch_page(browser, app_server, user, PHONE) as page:
        page.goto("/settings/")
        header = page.locator(".site-header")
        controls = {
            "chat": header.get_by_role("link", name="Chat", exact=True),
            "teams": header.get_by_role("link", name="Teams", exact=True),
            "settings": header.get_by_role("link", name="Settings"),
            "current team": header.locator(".team-chip"),
            "theme": header.get_by_role("button", name="Dark theme"),
            "log out": header.get_by_role("button", name="Log out"),
            "model": page.get_by_label("Model"),
            "save": page.get_by_role("button", name="Save settings"),
            "back to chat": page.get_by_role("link", name="Back to chat"),
            "your shares": page.get_by_role("link", name="Your shares"),
        }
        screenshot(page, "settings-phone")
        small = too_small(controls)
        page.goto("/teams/")
        page.locator(".team-table a").first.click()
        tabs = page.get_by_role("navigation", name="Team sections")
        small |= too_small({"members tab": tabs.get_by_role("link", name="Members")})
        page.goto("/teams/0/")
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        small |= too_small({"back": page.get_by_role("link", name="Back to your chats")})
        assert small == {}
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_the_team_list_keeps_long_names_whole_on_a_small_phone(
    browser, app_server, user, screenshot
):
    app_server.run_python(
        "from django.contrib.auth import get_user_model\n"
        "from chatapp.teams.actions import create_team, ensure_personal_team\n"
        f"owner = get_user_model().objects.get(username={user.username!r})\n"
        "ensure_personal_team(owner)\n"
        "create_team(owner, 'Research and Development Group of the Northern Region')\n"
    )
    with touch_page(browser, app_server, user, SMALL_PHONE) as page:
        page.goto("/teams/")
        region = page.get_by_role("region", name="Your teams")
        name = region.get_by_role("link", name="Research and Development Group")
        expect(name).to_be_visible()
        screenshot(page, "team-list-small-phone")
        # The name has the width to wrap between its words (not a column of word pieces), and
        # every row's action is in sight: nothing scrolls sideways.
        assert name.bounding_box()["width"] >= SMALL_PHONE["width"] / 2
        assert region.evaluate("box => box.scrollWidth <= box.clientWidth")
        expect(region.get_by_role("button", name="Make current")).to_be_in_viewport(ratio=1)


def test_a_refused_files_reason_takes_two_lines_until_tapped(browser, app_server, user, screenshot):
    with touch_page(browser, app_server, user, KEYBOARD_OPEN) as page:
        paste(page, {"name": "fake.png", "type": "image/png", "data": encoded(b"not an image")})
        reason = tray(page).locator(".draft[data-status=failed] .draft-detail")
        expect(reason).to_contain_text("fake.png is named like an image but its bytes are not")
        screenshot(page, "refused-file-keyboard-open")
        line = float(reason.evaluate("span => parseFloat(getComputedStyle(span).lineHeight)"))
        assert reason.bounding_box()["height"] <= 2 * line + 1
        # The composer leaves the chat's header and its controls uncovered.
        header = page.locator(".chat-header").bounding_box()
        assert page.locator("#composer").bounding_box()["y"] >= header["y"] + header["height"]
        reason.click()
        assert reason.evaluate("span => span.scrollHeight <= span.clientHeight")
        assert reason.bounding_box()["height"] > 2 * line + 1


def test_a_files_remove_button_is_big_enough_to_tap(browser, app_server, user, screenshot):
    with touch_page(browser, app_server, user, PHONE) as page:
        paste(page, {"name": "notes.txt", "type": "text/plain", "data": encoded(b"Some notes")})
        draft = tray(page).locator(".draft[data-status=ready]")
        expect(draft).to_contain_text("notes.txt")
        screenshot(page, "file-in-composer-phone")
        remove = draft.get_by_role("button", name="Remove notes.txt")
        assert too_small({"remove": remove}) == {}
        # The button stays inside its card, over the card's padding.
        card, button = draft.bounding_box(), remove.bounding_box()
        assert card["y"] <= button["y"]
        assert button["y"] + button["height"] <= card["y"] + card["height"]
        assert button["x"] + button["width"] <= card["x"] + card["width"]
