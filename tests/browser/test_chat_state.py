"""The page keeps its conversation from the socket's frames: no reload after an answer, and a
lost delta is noticed by its seq and filled from a fresh snapshot."""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, reload_holding
from tests.browser.conftest import MODEL

pytestmark = pytest.mark.browser


def test_an_answer_ends_from_its_done_frame_without_reloading_the_conversation(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    fetched = []
    page.on(
        "request",
        lambda request: (
            re.search(r"/api/conversations/\d+/$", request.url) and fetched.append(request.url)
        ),
    )
    chat.send("First question")
    chat.wait_for_status("complete")
    chat.send("Second question")
    chat.wait_for_status("complete", chat.answers.nth(1))
    meta = chat.answers.nth(1).locator(".message-meta")
    expect(meta).to_contain_text(MODEL)
    expect(meta).to_contain_text(re.compile(r"\d+ in · \d+ out tokens"))
    # One read when the conversation was created (its system prompt), none per answer.
    assert len(fetched) == 1
    stored = chat.api(f"/api/conversations/{chat.conversation_id()}/")["messages"][-1]
    assert chat.answer_content() == stored["content"]
    assert str(stored["usage"]["completion_tokens"]) in meta.inner_text()


def test_a_lost_delta_makes_the_page_resubscribe_and_the_snapshot_fills_the_gap(
    logged_in_page,
):
    page = logged_in_page
    chat = ChatPage(page)
    dropped, sent = [], []

    def relay(ws):
        server = ws.connect_to_server()

        def from_server(message):
            frame = json.loads(message)
            if frame.get("type") == "message.delta" and frame["seq"] == 3 and not dropped:
                dropped.append(frame)  # lost on the way, like a frame a restarted layer ate
                return
            ws.send(message)

        def from_page(message):
            sent.append(json.loads(message))
            server.send(message)

        server.on_message(from_server)
        ws.on_message(from_page)

    page.route_web_socket(re.compile(r"/ws/chat/$"), relay)
    page.reload()
    page.wait_for_selector("html[data-socket=open]")
    chat.send("[sim:pace tps=20] [sim:long tokens=120] Tell me a story")
    chat.wait_for_status("complete")
    assert dropped, "the test meant to drop delta 3"
    subscribes = [f for f in sent if f["type"] == "chat.subscribe"]
    conversation_id = chat.conversation_id()
    assert subscribes == [
        {
            "type": "chat.subscribe",
            "conversation_id": conversation_id,
            "request_id": f"subscribe-{conversation_id}",
        }
    ]
    stored = chat.api(f"/api/conversations/{chat.conversation_id()}/")["messages"][-1]
    assert dropped[0]["text"] in chat.answer_content()
    assert chat.answer_content() == stored["content"]


def test_enter_while_the_conversation_loads_keeps_the_question_until_it_has_loaded(
    logged_in_page,
):
    """Like the Send button, which is disabled meanwhile: a question sent before the
    conversation is shown would be drawn over by it."""
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("First question")
    chat.wait_for_status("complete")
    held = reload_holding(page, f"**/api/conversations/{chat.conversation_id()}/")
    chat.send("Second question")
    expect(chat.send_button).to_be_disabled()
    expect(chat.input).to_have_value("Second question")
    held[0].continue_()
    expect(chat.questions).to_have_count(1)
    expect(chat.send_button).to_be_enabled()
    chat.input.press("Enter")
    expect(chat.questions.nth(1)).to_contain_text("Second question")
    chat.wait_for_status("complete", chat.answers.nth(1))
    expect(chat.input).to_have_value("")
