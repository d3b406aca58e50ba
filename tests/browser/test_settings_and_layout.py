"""The settings page, the dark theme toggle and the phone-width drawer, in a real browser."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, log_in
from tests.browser.conftest import PHONE

pytestmark = pytest.mark.browser


def test_settings_save_and_apply_to_the_next_chat(logged_in_page):
    page = logged_in_page
    page.get_by_role("link", name="Default settings").click()
    page.wait_for_url("**/settings/")
    page.get_by_label("Model").select_option("Llama-3.3-70B-Instruct")
    page.get_by_label("Temperature").fill("0.4")
    page.get_by_label("Max tokens").fill("900")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    expect(page.get_by_label("Model")).to_have_value("Llama-3.3-70B-Instruct")
    expect(page.get_by_label("Temperature")).to_have_value("0.4")
    page.get_by_role("link", name="Chat", exact=True).click()
    page.wait_for_selector("html[data-socket=open]")
    chat = ChatPage(page)
    chat.send("Which settings did you get?")
    chat.wait_for_status("complete")
    assert "temperature 0.4" in chat.answer_content()
    assert "max tokens 900" in chat.answer_content()
    expect(chat.last_answer().locator(".message-meta")).to_contain_text("Llama-3.3-70B-Instruct")


def test_settings_reject_bad_values_clearly_and_keep_the_old_ones(logged_in_page):
    page = logged_in_page
    page.goto("/settings/")
    page.get_by_label("Top p").fill("0.5")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    page.get_by_label("Top p").fill("3")
    page.get_by_label("Max tokens").fill("0")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Top p must be a number from 0 to 1")).to_be_visible()
    expect(page.get_by_text("Max tokens must be a whole number between 1 and")).to_be_visible()
    expect(page.get_by_label("Top p")).to_have_attribute("aria-invalid", "true")
    page.goto("/settings/")
    expect(page.get_by_label("Top p")).to_have_value("0.5")
    expect(page.get_by_label("Max tokens")).to_have_value("")


def test_a_flashed_message_can_be_dismissed(logged_in_page):
    page = logged_in_page
    page.goto("/settings/")
    page.get_by_role("button", name="Save settings").click()
    notice = page.get_by_role("status").filter(has_text="Settings saved.")
    expect(notice).to_be_visible()
    notice.get_by_role("button", name="Dismiss this message").click()
    expect(notice).to_have_count(0)
    expect(page.locator("ul.flash")).to_have_count(0)
    expect(page.locator("main")).to_be_focused()
    page.reload()
    expect(page.get_by_text("Settings saved.")).to_have_count(0)


def test_a_message_flashed_for_the_chat_page_can_be_dismissed_there(logged_in_page):
    page = logged_in_page
    # Reset the settings without following the redirect, so the chat page shows the message.
    status = page.evaluate(
        """async () => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const response = await fetch("/settings/", {
                method: "POST", redirect: "manual", body: new URLSearchParams({reset: "1"}),
                headers: {"X-CSRFToken": token},
            });
            return response.type;
        }"""
    )
    assert status == "opaqueredirect"
    page.goto("/")
    notice = page.locator(".chat-flash").get_by_role("status")
    expect(notice).to_have_text("Your settings were reset to the team defaults.")
    notice.get_by_role("button", name="Dismiss this message").click()
    expect(page.locator(".chat-flash")).to_have_count(0)
    expect(page.locator("#messages")).to_be_focused()


def test_theme_toggle_is_remembered(logged_in_page):
    page = logged_in_page
    toggle = page.get_by_role("button", name="Dark theme")
    before = page.evaluate("getComputedStyle(document.body).backgroundColor")
    toggle.click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != before
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    page.goto("/settings/")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    page.get_by_role("button", name="Dark theme").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")


def test_system_dark_preference_applies_without_a_choice(browser, app_server, user, sim):
    context = browser.new_context(base_url=app_server.url, color_scheme="dark")
    try:
        page = context.new_page()
        log_in(page, user)
        expect(page.get_by_role("button", name="Dark theme")).to_have_attribute(
            "aria-pressed", "true"
        )
        assert page.evaluate("document.documentElement.dataset.theme") is None
    finally:
        context.close()


def test_phone_width_sidebar_is_a_drawer(phone_page):
    page = phone_page
    sidebar = page.get_by_role("complementary", name="Conversations")
    expect(sidebar).to_be_hidden()
    opener = page.get_by_role("button", name="Open conversations")
    opener.click()
    expect(sidebar).to_be_visible()
    expect(opener).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("button", name="New chat")).to_be_focused()
    page.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    expect(opener).to_be_focused()
    chat = ChatPage(page)
    chat.send("Hello from a phone")
    chat.wait_for_status("complete")
    # The title has the first row to itself, beside the menu; the chat's controls wrap.
    title = page.locator("#conversation-title").bounding_box()
    assert title is not None and title["width"] > 0.6 * PHONE["width"]
    opener.click()
    expect(sidebar.get_by_role("link", name="Hello from a phone")).to_be_visible()


def test_a_new_api_key_is_shown_whole_with_a_copy_button(logged_in_page, context, app_server):
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_server.url)
    page = logged_in_page
    page.goto("/settings/")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("The new API key").input_value()
    assert secret.startswith("ltc_")
    page.get_by_role("button", name="Copy key").click()
    expect(page.locator("#new-key-status")).to_have_text("Key copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    # A second copy is said again: the status (a live region) is emptied before it is filled,
    # as screen readers read a change, not the same words set anew.
    page.evaluate(
        """() => {
            const status = document.getElementById("new-key-status");
            window.statusTexts = [];
            new MutationObserver(() => window.statusTexts.push(status.textContent))
                .observe(status, {childList: true, characterData: true, subtree: true});
        }"""
    )
    page.get_by_role("button", name="Copy key").click()
    page.wait_for_function("() => window.statusTexts.at(-1) === 'Key copied.'")
    assert page.evaluate("window.statusTexts") == ["", "Key copied."]


def test_revoking_a_key_asks_first(logged_in_page):
    page = logged_in_page
    page.goto("/settings/")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    revoke = page.get_by_role("button", name="Revoke")
    asked = []

    def answer(dialog, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, False))
    revoke.click()
    expect(revoke).to_be_visible()  # still listed: nothing was sent
    assert asked == ["Revoke the key laptop? Scripts using it stop working at once."]
    page.once("dialog", lambda dialog: answer(dialog, True))
    revoke.click()
    expect(page.get_by_role("button", name="Revoke")).to_have_count(0)
    assert len(asked) == 2


def test_header_links_and_logout(logged_in_page, user):
    page = logged_in_page
    expect(page.get_by_role("link", name="Teams")).to_have_attribute("href", "/teams/")
    expect(page.locator(".team-chip")).to_have_text(f"{user.username}'s team")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")
    page.goto("/")
    page.wait_for_url("**/accounts/login/?next=/")


GRANT_SEED = """
from django.contrib.auth import get_user_model
from chatapp.chat.actions.admin_access import grant_read_access
from chatapp.chat.models import Conversation
from chatapp.teams.models import Membership
User = get_user_model()
owner = User.objects.get(username={username!r})
admin = User.objects.create(username={username!r} + "_admin", is_superuser=True, is_staff=True)
team = Membership.objects.filter(user=owner).first().team
conversation = Conversation.objects.create(team=team, owner=owner, title="Planning", model="m")
grant_read_access(admin, conversation, "An abuse report names this conversation", 15)
"""


def test_the_admin_access_log_is_a_styled_table(logged_in_page, app_server, user):
    app_server.run_python(GRANT_SEED.format(username=user.username))
    page = logged_in_page
    page.goto("/settings/admin-access/")
    header = page.get_by_role("columnheader", name="Reason")
    expect(header).to_have_css("text-transform", "uppercase")  # as every other table
    cell = page.get_by_role("cell", name="An abuse report names this conversation")
    expect(cell).to_have_css("border-bottom-style", "solid")


def test_form_buttons_keep_their_words_on_one_line_on_a_phone(phone_page):
    page = phone_page
    page.goto("/accounts/password/")
    button = page.get_by_role("button", name="Change password")
    lines = button.evaluate(
        """(el) => {
            const range = document.createRange();
            range.selectNodeContents(el);
            return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
        }"""
    )
    assert lines == 1


def test_a_person_deletes_their_own_account_from_settings(logged_in_page, user):
    page = logged_in_page
    page.goto("/settings/")
    page.get_by_role("link", name="Delete my account…").click()
    page.wait_for_url("**/settings/delete-account/")
    expect(page.get_by_role("heading", name="What stays")).to_be_visible()
    page.get_by_label("Your password").fill("not my password")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_text("That is not your password: nothing was deleted.")).to_be_visible()
    page.get_by_label("Your password").fill(user.password)
    page.get_by_role("button", name="Delete my account").click()
    page.wait_for_url("**/accounts/login/")
    expect(page.get_by_text("Your account and everything in it were deleted.")).to_be_visible()
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Please enter a correct username")
