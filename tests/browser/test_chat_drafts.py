"""What the user typed and attached but has not sent yet: a refused send gives it back even
after the user moved on, and a reload (or a tab closed and reopened) keeps it."""

import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import BrowserUser, ChatPage, log_in
from tests.browser.test_chat_attachments import drop, pdf, tray, wait_until_attached

pytestmark = pytest.mark.browser

DELETE_FIRST_UPLOAD = """async () => {
    const id = window.chatPage.state.drafts[0].upload.id;
    const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
    await fetch(`/api/uploads/${id}/`, {method: "DELETE", headers: {"X-CSRFToken": token}});
}"""


def test_a_send_refused_after_the_user_moved_on_comes_back_and_says_where(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("Plan the offsite")
    chat.wait_for_status("complete")
    title = page.locator("#conversation-title").inner_text()
    drop(page, pdf())
    wait_until_attached(page, 1)
    # The upload disappears behind the page's back: the server refuses the send (not_found),
    # but only once the user has already gone to a new chat.
    page.evaluate(DELETE_FIRST_UPLOAD)
    page.evaluate(
        """() => {
            const chat = window.chatPage;
            chat.input.value = "Read this report";
            chat.send();
            chat.newChat();
        }"""
    )
    notice = page.locator("#chat-notice")
    expect(notice).to_contain_text(f"Your message in “{title}” was not sent")
    expect(notice).to_contain_text("attach it again")
    expect(chat.input).to_have_value("Read this report")
    expect(tray(page).locator(".draft[data-status=failed]")).to_contain_text("report.pdf")
    expect(chat.questions).to_have_count(0)  # the new chat shows none of it as sent


def test_text_refused_after_moving_on_goes_below_what_was_typed_since(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    drop(page, pdf())
    wait_until_attached(page, 1)
    page.evaluate(DELETE_FIRST_UPLOAD)
    page.evaluate(
        """() => {
            const chat = window.chatPage;
            chat.input.value = "Summarise the report";
            chat.send();
            chat.newChat();
            chat.input.value = "Something else";
        }"""
    )
    expect(page.locator("#chat-notice")).to_contain_text("Your message in a new chat was not sent")
    expect(chat.input).to_have_value("Something else\n\nSummarise the report")


def test_a_reload_keeps_the_unsent_text_and_files(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("First question")
    chat.wait_for_status("complete")
    drop(page, pdf())
    wait_until_attached(page, 1)
    chat.input.fill("What does the report say?")
    page.reload()
    page.wait_for_selector("html[data-socket=open]")
    expect(chat.input).to_have_value("What does the report say?")
    wait_until_attached(page, 1)
    # The box is restored at once, the conversation when its fetch returns: until then the
    # page sends nothing (Send is disabled, and Enter does nothing).
    expect(chat.send_button).to_be_enabled()
    chat.input.press("Enter")
    chat.wait_for_status("complete", chat.answers.nth(1))
    expect(chat.questions.last.get_by_role("link", name="Download report.pdf")).to_be_visible()
    # Sent, it is no longer kept: a reload brings an empty box.
    page.reload()
    page.wait_for_selector("html[data-socket=open]")
    expect(chat.questions).to_have_count(2)
    expect(chat.input).to_have_value("")
    expect(tray(page).locator(".draft")).to_have_count(0)


def test_a_draft_is_never_shown_to_another_user_of_the_tab(logged_in_page, app_server):
    page = logged_in_page
    chat = ChatPage(page)
    chat.input.fill("My private draft")
    page.get_by_role("button", name="Log out").click()
    other = BrowserUser(f"user_{uuid.uuid4().hex[:10]}")
    app_server.create_user(other.username)
    log_in(page, other)
    expect(chat.input).to_have_value("")
    assert page.evaluate("Object.keys(sessionStorage)") == []


def test_switching_team_keeps_the_text_but_not_the_other_teams_files(
    logged_in_page, app_server, user
):
    app_server.run_python(f"""
from django.contrib.auth import get_user_model
from chatapp.teams.models import Membership, Team
person = get_user_model().objects.get(username={user.username!r})
Membership.objects.create(team=Team.objects.create(name="Zeta crew"), user=person)
""")
    page = logged_in_page
    page.reload()  # the team list now offers the second team
    page.wait_for_selector("html[data-socket=open]")
    chat = ChatPage(page)
    drop(page, pdf())
    wait_until_attached(page, 1)
    chat.input.fill("Half a thought")
    # The picker shows the choice at once; the page reloads into the team once the server has
    # it. What follows is about that new page, not the one left.
    with page.expect_navigation():
        page.get_by_label("Team", exact=True).select_option(label="Zeta crew")
    expect(page.locator("#team-picker option:checked")).to_have_text("Zeta crew")
    page.wait_for_selector("html[data-socket=open]")
    expect(chat.input).to_have_value("Half a thought")
    # Stored in the other team, the file could not go with a message here.
    expect(page.locator("#chat-notice")).to_contain_text("attach them again")
    expect(tray(page).locator(".draft")).to_have_count(0)
