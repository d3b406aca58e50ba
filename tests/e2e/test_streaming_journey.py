"""One conversation, the way people use it: watch, stop, regenerate, reload, a second tab."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
from tests.browser.conftest import MODEL
from tests.e2e.journeys import expect_socket_open
from tests.support.polling import wait_for

pytestmark = pytest.mark.browser

# Slow enough that a stop, a reload or a second tab lands while the answer is still streaming.
SLOW = "[sim:pace tps=12] [sim:long tokens=80]"


def stored_messages(chat: ChatPage) -> list[dict]:
    return chat.api(f"/api/conversations/{chat.conversation_id()}/")["messages"]


def contents(chat: ChatPage) -> list[str]:
    return [chat.answer_content(answer) for answer in chat.answers.all()]


def test_watch_stop_regenerate_reload_and_follow_in_a_second_tab(logged_in_page, context, sim):
    page = logged_in_page
    chat = ChatPage(page)

    # Watch an answer stream: it grows while marked streaming, then shows model and usage.
    chat.send("Tell me about llamas")
    chat.wait_for_status("streaming")
    chat.wait_for_text_longer_than(chat.wait_for_text_longer_than(0))
    partial = chat.answer_content()
    chat.wait_for_status("complete")
    assert chat.answer_content().startswith(partial)
    assert chat.answer_content().startswith("You asked: *Tell me about llamas*")
    expect(chat.last_answer().locator(".markdown .code-block")).to_be_visible()  # rendered
    meta = chat.last_answer().locator(".message-meta")
    expect(meta).to_contain_text(MODEL)
    expect(meta).to_contain_text(re.compile(r"\d+ in · \d+ out tokens"))
    expect(page.locator("#conversation-title")).to_have_text("Tell me about llamas")

    # Stop the next one mid-answer: the upstream request is cancelled, the text kept.
    chat.send(f"{SLOW} Count slowly")
    chat.wait_for_text_longer_than(0)
    chat.stop_button.click()
    chat.wait_for_status("stopped")
    wait_for(lambda: sim.active_streams == 0, "the simulator's stream to close")
    stopped = stored_messages(chat)[-1]
    assert stopped["status"] == "stopped"
    assert stopped["content"] == chat.answer_content()
    assert len(stopped["content"].split()) < 80

    # Regenerate the stopped answer, and open the conversation in a second tab meanwhile:
    # both tabs show the same stream and end with the same text.
    chat.last_answer().get_by_role("button", name="Regenerate").click()
    expect(chat.last_answer()).not_to_have_attribute("data-message-id", str(stopped["id"]))
    chat.wait_for_status("streaming")
    second = context.new_page()
    second.goto(page.url)
    expect_socket_open(second)
    other = ChatPage(second)
    other.wait_for_status("streaming")
    expect(other.last_answer()).to_have_attribute(
        "data-message-id", chat.last_answer().get_attribute("data-message-id")
    )
    other.wait_for_text_longer_than(other.wait_for_text_longer_than(0))  # live in the 2nd tab
    chat.wait_for_status("complete")
    other.wait_for_status("complete")
    assert contents(other) == contents(chat)
    assert stored_messages(chat)[-1]["content"] == chat.answer_content()
    expect(chat.answers).to_have_count(2)

    # A question from the first tab streams into the second one too; reloading the first
    # mid-answer picks the stream back up, and it finishes in both, identical to the stored one.
    chat.send(f"{SLOW} Keep going after a reload")
    other.questions.nth(2).get_by_text("Keep going after a reload").wait_for()
    before = chat.wait_for_text_longer_than(20)
    page.reload()
    expect_socket_open(page)
    chat.wait_for_status("streaming")
    chat.wait_for_text_longer_than(before)
    chat.wait_for_status("complete")
    other.wait_for_status("complete", other.answers.nth(2))
    stored = [m["content"] for m in stored_messages(chat) if m["role"] == "assistant"]
    assert contents(chat) == stored
    assert contents(other) == stored
    assert [q.inner_text() for q in other.questions.all()] == [
        q.inner_text() for q in chat.questions.all()
    ]
