"""Sending a message and watching the answer stream, render, stop and survive a reload."""

import re

import pytest
from playwright.sync_api import expect

from chatapp.chat import events
from chatapp.chat.actions.replies import INTERRUPTED_CODE, INTERRUPTED_MESSAGE
from tests.browser.chat_page import ChatPage
from tests.browser.conftest import MODEL
from tests.support.polling import wait_for

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
    assert chat.questions.first.locator(".bubble").inner_text() == "Remember the word pineapple"
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
    assert chat.questions.first.locator(".bubble").inner_text() == "first line\nsecond line"
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


def test_a_socket_closed_as_soon_as_it_opens_backs_off_further_each_time(logged_in_page):
    """While Redis is down the server accepts each socket, then closes it at once (4012): the
    page waits longer before each try, not half a second every time for as long as it lasts."""
    page = logged_in_page
    page.evaluate(
        """() => {
            const socket = window.chatPage.socket;
            const connect = socket.connect.bind(socket);
            window.reconnectDelays = [];
            window.opens = 0;
            socket.connect = () => {
                connect();
                const ws = socket.ws;
                ws.addEventListener("open", () => {
                    window.opens += 1;
                    ws.close(4012, "service restart");
                });
            };
            socket.addEventListener("status", (event) => {
                const { state, delay } = event.detail;
                if (state === "reconnecting") window.reconnectDelays.push(delay);
            });
            socket.ws.close();
        }"""
    )
    wait_for(lambda: page.evaluate("window.reconnectDelays.length") >= 5, "five reconnects")
    delays = page.evaluate("window.reconnectDelays")
    # 0.5 s doubling: the fifth wait is 4-8 s (jittered), where each was at most 0.5 s.
    assert page.evaluate("window.opens") >= 4
    assert delays[4] >= 4000, delays


def test_a_follow_up_lost_with_the_connection_comes_back_to_be_sent_again(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("First question")
    chat.wait_for_status("complete")
    chat.drop_the_connection_at_the_next_send()
    chat.send("A follow-up typed with care")
    expect(page.locator("#chat-notice")).to_contain_text("before your message reached the server")
    expect(chat.input).to_have_value("A follow-up typed with care")
    expect(chat.questions).to_have_count(1)
    page.get_by_role("button", name="Retry").click()
    expect(chat.questions).to_have_count(2)
    chat.wait_for_status("complete")
    stored = chat.api(f"/api/conversations/{chat.conversation_id()}/")["messages"]
    assert [m["content"] for m in stored if m["role"] == "user"] == [
        "First question",
        "A follow-up typed with care",
    ]


def test_a_follow_up_that_reached_the_server_before_the_drop_is_shown_once(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("First question")
    chat.wait_for_status("complete")
    chat.drop_the_connection_at_the_next_send(delivered=True)
    with page.expect_websocket():  # the page has connected again: what follows is after the drop
        chat.send("[sim:pace tps=20] [sim:long tokens=40] It got there")
    page.wait_for_selector("html[data-socket=open]", state="attached")
    chat.wait_for_status("complete", chat.answers.nth(1))  # the follow-up's own answer
    expect(chat.questions).to_have_count(2)
    expect(page.locator("#chat-notice")).not_to_contain_text("before your message reached")
    expect(chat.input).to_have_value("")


def test_regenerate_replaces_the_last_answer(logged_in_page):
    chat = ChatPage(logged_in_page)
    chat.send("Say something twice")
    chat.wait_for_status("complete")
    first_id = chat.last_answer().get_attribute("data-message-id")
    expect(chat.answers.first.get_by_role("button", name="Regenerate")).to_be_visible()
    chat.last_answer().get_by_role("button", name="Regenerate").click()
    expect(chat.last_answer()).not_to_have_attribute("data-message-id", first_id)
    chat.wait_for_status("complete")
    expect(chat.answers).to_have_count(1)
    stored = chat.api(f"/api/conversations/{chat.conversation_id()}/")["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert str(stored[-1]["id"]) == chat.last_answer().get_attribute("data-message-id")
    assert stored[-1]["content"] == chat.answer_content()


def test_only_the_last_answer_offers_regenerate(logged_in_page):
    chat = ChatPage(logged_in_page)
    chat.send("First question")
    chat.wait_for_status("complete")
    chat.send("Second question")
    chat.wait_for_status("complete", chat.answers.nth(1))
    expect(chat.answers.nth(0).get_by_role("button", name="Regenerate")).to_be_hidden()
    expect(chat.answers.nth(1).get_by_role("button", name="Regenerate")).to_be_visible()


def test_upstream_failure_shows_retrying_then_an_error_with_retry(logged_in_page):
    chat = ChatPage(logged_in_page)
    # Three 500s: the first try and both of the server's retries fail; the fourth succeeds.
    chat.send("[sim:fault=500 times=3] Are you there?")
    expect(chat.last_answer().get_by_text("Retrying…")).to_be_visible()
    chat.wait_for_status("error")
    answer = chat.last_answer()
    expect(answer.locator(".message-notice")).to_be_visible()
    answer.get_by_role("button", name="Retry").click()
    chat.wait_for_status("complete")
    expect(chat.answers).to_have_count(1)
    assert "You asked: *Are you there?*" in chat.answer_content()


def test_a_page_reloaded_while_the_answer_waits_to_retry_says_it_retries(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("[sim:fault=503 times=1 retry_after=30] Are you there?")
    expect(chat.last_answer().get_by_text("Retrying…")).to_be_visible()
    page.reload()
    page.wait_for_selector("html[data-socket=open]")
    chat.wait_for_status("streaming")
    expect(chat.last_answer().get_by_text("Retrying…")).to_be_visible()
    chat.stop_button.click()
    chat.wait_for_status("stopped")


def test_replayed_deltas_are_dropped_by_seq(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("[sim:pace tps=4] [sim:long tokens=200] Go slowly")
    chat.wait_for_text_longer_than(0)
    # A frame the page already holds (same or older seq) must not add its text again.
    page.evaluate(
        """() => {
            const view = window.chatPage.state.streaming;
            for (const seq of [view.seq, view.seq - 1, 0]) {
                window.chatPage.handleFrame(
                    {type: "message.delta", message_id: view.id, seq, text: " REPLAYED"});
            }
        }"""
    )
    assert "REPLAYED" not in chat.answer_content()
    chat.stop_button.click()
    chat.wait_for_status("stopped")


def test_an_answer_marked_interrupted_that_then_finishes_ends_complete(logged_in_page):
    """The reaper takes an answer whose process only stalled for dead; when it goes on, the
    page follows it to its real end, and says it completed."""
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("[sim:pace tps=20] [sim:long tokens=60] Tell me a story")
    chat.wait_for_text_longer_than(0)
    ids = page.evaluate(
        "() => [window.chatPage.state.conversationId, window.chatPage.state.streaming.id]"
    )
    # What the reaper sends to the conversation's sockets.
    reaped = [
        events.message_error(*ids, INTERRUPTED_CODE, INTERRUPTED_MESSAGE, retryable=True),
        events.message_done(*ids, status="interrupted", model=MODEL),
    ]
    page.evaluate("(frames) => frames.forEach((f) => window.chatPage.handleFrame(f))", reaped)
    chat.wait_for_status("complete")
    expect(chat.last_answer().locator(".message-notice")).to_be_hidden()
    expect(page.locator("#chat-announcer")).to_have_text("Answer complete")


def test_an_answer_failing_after_the_user_left_its_conversation_says_nothing_there(
    logged_in_page,
):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("[sim:pace tps=3] [sim:fault=error_after after=4] Tell me slowly")
    chat.wait_for_text_longer_than(0)
    chat.record_frames()
    page.get_by_role("button", name="New chat").first.click()
    # The socket still follows the conversation left: its answer's error reaches the page.
    wait_for(
        lambda: "message.error" in chat.frames_seen(),
        "the error of the answer left",
    )
    # The new chat neither shows it nor offers a Retry that would send that question here.
    assert page.evaluate("window.chatPage.state.notice") is None
    expect(page.locator("#chat-notice")).to_be_hidden()
    expect(chat.questions).to_have_count(0)
