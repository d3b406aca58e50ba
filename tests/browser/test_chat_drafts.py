"""What the user typed and attached but has not sent yet: a send refused after the user moved
on gives it back, and says where it was for."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
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
