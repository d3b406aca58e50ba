"""Sending a message and watching the answer stream, render, stop and survive a reload."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
from tests.browser.conftest import MODEL

pytestmark = pytest.mark.browser


def test_answer_streams_then_shows_usage_and_model(logged_in_page, page_watch):
    chat = ChatPage(logged_in_page)
    chat.send("[sim:long tokens=120] Tell me about llamas")
    chat.wait_for_status("streaming")
    first = chat.wait_for_text_longer_than(0)
    chat.wait_for_text_longer_than(first)  # the same answer grew while streaming
    chat.wait_for_status("complete")
    meta = chat.last_answer().locator(".message-meta")
    expect(meta).to_contain_text(MODEL)
    expect(meta).to_contain_text(re.compile(r"\d+ in · \d+ out tokens"))
    assert chat.send_button.is_visible() and chat.stop_button.is_hidden()
    assert page_watch.page_errors == [] and page_watch.console_errors == []


def test_conversation_url_names_it_and_reload_shows_it(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("Remember the word pineapple")
    chat.wait_for_status("complete")
    conversation_id = chat.conversation_id()
    assert page.url.endswith(f"/c/{conversation_id}/")
    content = chat.answer_content()
    page.reload()
    chat.wait_for_status("complete")
    assert chat.questions.first.inner_text() == "Remember the word pineapple"
    assert chat.answer_content() == content


def test_enter_sends_and_shift_enter_adds_a_line(logged_in_page):
    chat = ChatPage(logged_in_page)
    chat.input.focus()
    logged_in_page.keyboard.type("first line")
    logged_in_page.keyboard.press("Shift+Enter")
    logged_in_page.keyboard.type("second line")
    assert chat.questions.count() == 0
    logged_in_page.keyboard.press("Enter")
    chat.wait_for_status("complete")
    assert chat.questions.first.inner_text() == "first line\nsecond line"
    assert chat.input.input_value() == ""


def test_stop_ends_the_answer_where_it_was(logged_in_page):
    chat = ChatPage(logged_in_page)
    chat.send("[sim:pace tps=8] [sim:long tokens=400] Count slowly")
    chat.wait_for_text_longer_than(0)
    chat.stop_button.click()
    chat.wait_for_status("stopped")
    assert "Stopped" in chat.last_answer().locator(".message-meta").inner_text()
    assert chat.send_button.is_visible()
    shown = chat.answer_content()
    stored = chat.api(f"/api/conversations/{chat.conversation_id()}/")["messages"][-1]
    assert stored["status"] == "stopped"
    assert stored["content"] == shown
    assert len(shown.split()) < 400


def test_reload_mid_answer_reattaches_and_the_answer_keeps_growing(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("[sim:pace tps=15] [sim:long tokens=150] Tell a long story")
    before = chat.wait_for_text_longer_than(20)
    page.reload()
    page.wait_for_selector("html[data-socket=open]")
    chat.wait_for_status("streaming")
    chat.wait_for_text_longer_than(before)  # still growing after the reload
    chat.wait_for_status("complete")
    stored = chat.api(f"/api/conversations/{chat.conversation_id()}/")["messages"][-1]
    assert chat.answer_content() == stored["content"]  # no gap, no duplicate


def test_dropped_socket_reconnects_and_resumes_the_answer(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("[sim:pace tps=15] [sim:long tokens=150] Keep talking")
    chat.wait_for_text_longer_than(20)
    page.evaluate("window.chatPage.socket.ws.close()")
    page.wait_for_selector("html[data-socket=reconnecting]", state="attached")
    page.wait_for_selector("html[data-socket=open]", state="attached")
    chat.wait_for_status("complete")
    stored = chat.api(f"/api/conversations/{chat.conversation_id()}/")["messages"][-1]
    assert chat.answer_content() == stored["content"]
