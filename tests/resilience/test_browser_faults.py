"""Faults as the user sees them, in real Chromium: a cut answer says why and offers to
regenerate, and a Redis restart mid-answer is ridden out by the page's own reconnect."""

import pytest
from playwright.sync_api import expect

from tests.browser import conftest as browser_fixtures
from tests.browser.chat_page import ChatPage
from tests.resilience.servers import open_chat_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

browser, chromium_path = browser_fixtures.browser, browser_fixtures.chromium_path
RECORD_SOCKET_STATES = """window.socketStates = [];
    window.chatPage.socket.addEventListener('status', (e) => socketStates.push(e.detail.state));"""


def stored_answer(chat: ChatPage) -> dict:
    return chat.api(f"/api/conversations/{chat.conversation_id()}/")["messages"][-1]


def test_a_cut_answer_keeps_its_text_says_why_and_regenerates(browser, launch, session_for, sim):
    server = launch("app")
    page, watch = open_chat_page(browser, server, session_for())
    try:
        chat = ChatPage(page)
        chat.send("[sim:fault=cut after=8 times=1] Tell me everything")
        chat.wait_for_status("interrupted")
        answer = chat.last_answer()
        notice = answer.locator(".message-notice")
        expect(notice).to_have_text(
            "The answer was cut off: the connection to the Llama API dropped."
            " Regenerate to try again."
        )
        shown = chat.answer_content()
        assert shown and shown == stored_answer(chat)["content"]
        page.reload()  # the reason is stored with the answer, and survives a reload
        chat.wait_for_status("interrupted")
        expect(chat.last_answer().locator(".message-notice")).to_contain_text("connection")
        answer = chat.last_answer()
        answer.get_by_role("button", name="Regenerate").click()
        chat.wait_for_status("complete")
        assert stored_answer(chat)["status"] == "complete"
        assert watch.page_errors == []
    finally:
        page.context.close()


def test_the_page_rides_out_a_redis_restart(browser, launch, session_for, private_redis, sim):
    server = launch("app", REDIS_URL=private_redis.url)
    page, watch = open_chat_page(browser, server, session_for())
    try:
        chat = ChatPage(page)
        chat.send("[sim:pace tps=20] [sim:long tokens=160] Tell me a long story")
        before = chat.wait_for_text_longer_than(20)
        page.evaluate(RECORD_SOCKET_STATES)
        private_redis.restart()  # every group is forgotten; the server closes the socket
        page.wait_for_function(
            "() => window.socketStates.includes('reconnecting') && window.chatPage.socket.isOpen"
        )
        chat.wait_for_text_longer_than(before)
        chat.wait_for_status("complete")
        stored = stored_answer(chat)
        assert stored["status"] == "complete"
        assert stored["usage"]["completion_tokens"] == 160
        assert chat.answer_content() == stored["content"]  # no gap, no repeat
        assert watch.page_errors == []
    finally:
        page.context.close()
