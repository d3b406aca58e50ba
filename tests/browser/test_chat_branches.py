"""Editing a question, the versions of questions and answers (`‹ 2/3 ›`) and switching."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage

pytestmark = pytest.mark.browser


def answered(chat: ChatPage, text: str, count: int) -> None:
    chat.send(text)
    expect(chat.answers).to_have_count(count)
    chat.wait_for_status("complete")


def test_edit_a_question_see_the_new_answer_and_switch_back(logged_in_page, page_watch):
    page = logged_in_page
    chat = ChatPage(page)
    answered(chat, "What is a llama?", 1)
    answered(chat, "How tall are they?", 2)
    original = chat.answer_content()

    second = chat.questions.nth(1)
    second.hover()
    second.get_by_role("button", name="Edit this question").click()
    editor = second.get_by_label("Edit your question")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("How tall are they?")
    editor.fill("How heavy are they?")
    editor.press("Enter")

    expect(chat.questions.nth(1).locator(".bubble")).to_have_text("How heavy are they?")
    expect(chat.answers).to_have_count(2)
    chat.wait_for_status("complete")
    switcher = chat.questions.nth(1).get_by_role("group", name="Version 2 of 2")
    expect(switcher).to_contain_text("2/2")
    edited_answer = chat.answer_content()

    switcher.get_by_role("button", name="Previous version").click()
    expect(chat.questions.nth(1).locator(".bubble")).to_have_text("How tall are they?")
    expect(chat.questions.nth(1).get_by_role("group", name="Version 1 of 2")).to_be_visible()
    chat.wait_for_status("complete")
    assert chat.answer_content() == original
    # Each answer shown keeps its model and token counts, as when the page loaded.
    for index in (0, 1):
        expect(chat.answers.nth(index).locator(".message-meta")).to_contain_text("out tokens")

    page.reload()  # the branch chosen is remembered
    expect(chat.questions.nth(1).locator(".bubble")).to_have_text("How tall are they?")
    chat.wait_for_status("complete")
    first_version = chat.questions.nth(1).get_by_role("group", name="Version 1 of 2")
    first_version.get_by_role("button", name="Next version").focus()
    page.keyboard.press("Enter")  # the switcher works from the keyboard
    expect(chat.questions.nth(1).locator(".bubble")).to_have_text("How heavy are they?")
    # The keyboard stays on the switcher of the version shown (the next arrow is at its end).
    expect(chat.questions.nth(1).get_by_role("button", name="Previous version")).to_be_focused()
    chat.wait_for_status("complete")
    assert chat.answer_content() == edited_answer
    assert page_watch.page_errors == [] and page_watch.console_errors == []


def test_up_arrow_in_an_empty_composer_edits_the_last_question(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    answered(chat, "First", 1)
    answered(chat, "Second", 2)
    chat.input.focus()
    chat.input.press("ArrowUp")
    editor = chat.questions.nth(1).get_by_label("Edit your question")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("Second")
    editor.press("Escape")
    expect(editor).to_be_hidden()
    # The keyboard goes back to the question's Edit button, not to the message box.
    edit = chat.questions.nth(1).get_by_role("button", name="Edit this question")
    expect(edit).to_be_focused()
    expect(chat.questions.nth(1).locator(".bubble")).to_have_text("Second")
    page.keyboard.press("Enter")
    expect(editor).to_be_focused()
    chat.questions.nth(1).get_by_role("button", name="Cancel").click()
    expect(edit).to_be_focused()


def test_regenerate_keeps_the_earlier_answer_as_a_version(logged_in_page):
    chat = ChatPage(logged_in_page)
    answered(chat, "Say something", 1)
    first = chat.answer_content()
    first_id = chat.last_answer().get_attribute("data-message-id")
    chat.last_answer().get_by_role("button", name="Regenerate").click()
    expect(chat.last_answer()).not_to_have_attribute("data-message-id", first_id)
    chat.wait_for_status("complete")
    versions = chat.last_answer().get_by_role("group", name="Version 2 of 2")
    versions.get_by_role("button", name="Previous version").click()
    expect(chat.last_answer()).to_have_attribute("data-message-id", first_id)
    assert chat.answer_content() == first
    expect(chat.answers).to_have_count(1)


def test_an_answer_stopped_before_any_text_leaves_no_empty_version(logged_in_page):
    """Stopped before its first word, it had nothing to show: it says so, and its regenerate
    takes its place."""
    chat = ChatPage(logged_in_page)
    chat.send("Think first [sim:pace ttft=30]")
    expect(chat.stop_button).to_be_visible()
    chat.stop_button.click()
    chat.wait_for_status("stopped")
    expect(chat.last_answer().locator(".message-notice")).to_have_text("Stopped before answering.")
    stopped_id = chat.last_answer().get_attribute("data-message-id")
    chat.last_answer().get_by_role("button", name="Regenerate").click()
    expect(chat.last_answer()).not_to_have_attribute("data-message-id", stopped_id)
    chat.stop_button.click()
    chat.wait_for_status("stopped")
    expect(chat.answers).to_have_count(1)
    expect(chat.last_answer().get_by_role("group", name=re.compile("Version"))).to_have_count(0)
    logged_in_page.reload()
    expect(chat.answers).to_have_count(1)
    expect(chat.last_answer().get_by_role("group", name=re.compile("Version"))).to_have_count(0)


def test_switching_versions_from_the_keyboard_says_which_version_is_shown(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    answered(chat, "Say something", 1)
    chat.last_answer().get_by_role("button", name="Regenerate").click()
    versions = chat.last_answer().get_by_role("group", name="Version 2 of 2")
    expect(versions).to_be_visible()
    chat.wait_for_status("complete")
    announcer = page.locator("#chat-announcer")
    expect(announcer).to_have_text("Answer complete")
    versions.get_by_role("button", name="Previous version").focus()
    page.keyboard.press("Enter")
    expect(chat.last_answer().get_by_role("group", name="Version 1 of 2")).to_be_visible()
    # The focus stays on the switcher, whose own name does not change: the page says it.
    expect(announcer).to_have_text("Version 1 of 2")
    expect(chat.last_answer().get_by_role("button", name="Next version")).to_be_focused()
    page.keyboard.press("Enter")
    expect(announcer).to_have_text("Version 2 of 2")


def test_a_search_result_lands_on_the_message_in_its_version(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    answered(chat, "Tell me about alpacas", 1)
    answered(chat, "And their wool?", 2)
    second = chat.questions.nth(1)
    second.hover()
    second.get_by_role("button", name="Edit this question").click()
    second.get_by_label("Edit your question").fill("And their teeth?")
    second.get_by_label("Edit your question").press("Enter")
    expect(chat.questions.nth(1).locator(".bubble")).to_have_text("And their teeth?")
    chat.wait_for_status("complete")
    tree = chat.api(f"/api/conversations/{chat.conversation_id()}/export?format=json")["tree"]
    hidden = {m["id"] for m in tree if "wool" in m["content"]}  # the version not shown
    found = chat.api("/api/conversations/?q=wool")["results"][0]["message_id"]
    assert found in hidden

    page.get_by_role("button", name="New chat").click()
    page.get_by_label("Search conversations").fill("wool")
    result = page.locator(".conversation-item").first
    expect(result.locator(".conversation-snippet")).to_contain_text("wool")
    result.locator(".conversation-link").click()
    landed = page.locator(".message.is-landed")
    expect(landed).to_have_attribute("data-message-id", str(found))
    expect(landed).to_be_in_viewport()
    expect(chat.questions.nth(1).locator(".bubble")).to_have_text("And their wool?")


def test_a_search_results_address_opened_in_a_new_tab_lands_on_its_message(logged_in_page):
    """Ctrl+click or a middle click opens the result's link in a new tab: the address itself
    names the message."""
    page = logged_in_page
    chat = ChatPage(page)
    answered(chat, "Tell me about alpacas", 1)
    answered(chat, "And their wool?", 2)
    found = chat.api("/api/conversations/?q=wool")["results"][0]["message_id"]
    page.get_by_role("button", name="New chat").click()
    page.get_by_label("Search conversations").fill("wool")
    link = page.locator(".conversation-item").first.locator(".conversation-link")
    expect(link).to_have_attribute("href", re.compile(rf"#message-{found}$"))
    tab = page.context.new_page()
    tab.goto(link.get_attribute("href"))
    landed = tab.locator(".message.is-landed")
    expect(landed).to_have_attribute("data-message-id", str(found))
    expect(landed).to_contain_text("And their wool?")
    tab.close()


def test_a_question_or_an_edit_over_the_size_limit_is_refused_before_sending(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    answered(chat, "What is a llama?", 1)
    too_long = "é" * (16 * 1024 + 1)  # 32 KiB + 2 bytes in UTF-8: over CHAT_MAX_CONTENT_BYTES
    notice = page.locator("#chat-notice-text")

    chat.input.fill(too_long)
    chat.input.press("Enter")
    expect(notice).to_have_text("That message is too long (the limit is 32768 bytes).")
    expect(chat.input).to_have_value(too_long)  # kept, to be shortened

    question = chat.questions.first
    question.hover()
    question.get_by_role("button", name="Edit this question").click()
    question.get_by_label("Edit your question").fill(too_long)
    page.locator("#notice-close").click()
    question.get_by_label("Edit your question").press("Enter")
    expect(notice).to_have_text("That message is too long (the limit is 32768 bytes).")
    expect(chat.questions).to_have_count(1)
    expect(chat.answers).to_have_count(1)
    stored = chat.api(f"/api/conversations/{chat.conversation_id()}/")["messages"]
    assert [m["content"] for m in stored if m["role"] == "user"] == ["What is a llama?"]


def test_a_switch_redraws_only_the_messages_it_changes(logged_in_page):
    """conversation.state after a switch leaves the messages above the switch point as drawn:
    a long conversation's switch costs what it changes, not its whole length."""
    page = logged_in_page
    chat = ChatPage(page)
    answered(chat, "What is a llama?", 1)
    answered(chat, "How tall are they?", 2)
    first_id = chat.last_answer().get_attribute("data-message-id")
    chat.last_answer().get_by_role("button", name="Regenerate").click()
    expect(chat.last_answer()).not_to_have_attribute("data-message-id", first_id)
    chat.wait_for_status("complete")
    page.evaluate(
        "window.drawn = [...document.querySelectorAll('.bubble, .message-meta')]"
        ".map((element) => element.firstChild)"
    )
    versions = chat.last_answer().get_by_role("group", name="Version 2 of 2")
    versions.get_by_role("button", name="Previous version").click()
    expect(chat.last_answer()).to_have_attribute("data-message-id", first_id)
    kept = page.evaluate(
        "[...document.querySelectorAll('.bubble, .message-meta')]"
        ".map((element, n) => element.firstChild === window.drawn[n])"
    )
    # Both questions and the first answer as they were; the answer switched to is new.
    assert kept == [True, True, True, False]


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_the_edit_box_opens_whole_and_fits_its_question(request, size):
    page = request.getfixturevalue("phone_page" if size == "phone" else "logged_in_page")
    chat = ChatPage(page)
    question = "\n".join(f"Line {n} of a question long enough to need some room" for n in range(5))
    chat.send(question)
    chat.wait_for_status("complete")
    chat.input.fill("")
    answered(chat, "[sim:long tokens=300] And a long answer below it", 2)

    first = chat.questions.first
    first.hover()
    first.get_by_role("button", name="Edit this question").click()
    editor = first.get_by_label("Edit your question")
    expect(editor).to_be_focused()
    expect(editor).to_have_value(question)
    # Every line shows, with nothing hidden under the header or scrolled away in the box.
    expect(editor).to_be_in_viewport(ratio=1)
    header = page.locator(".chat-header").bounding_box()
    assert editor.bounding_box()["y"] >= header["y"] + header["height"]
    assert editor.evaluate("(el) => el.scrollHeight <= el.clientHeight")


def test_the_edit_box_keeps_the_height_the_user_dragged_it_to(logged_in_page, screenshot):
    """Typing refits the edit box to its text, but never below a height set with its corner
    handle; text that needs more room than that still grows it."""
    page = logged_in_page
    chat = ChatPage(page)
    answered(chat, "A short question", 1)
    question = chat.questions.first
    question.hover()
    question.get_by_role("button", name="Edit this question").click()
    editor = question.get_by_label("Edit your question")
    expect(editor).to_be_focused()
    opened = editor.bounding_box()

    # The resize handle sits in the bottom right corner: drag it 150 px down.
    corner_x = opened["x"] + opened["width"] - 3
    corner_y = opened["y"] + opened["height"] - 3
    page.mouse.move(corner_x, corner_y)
    page.mouse.down()
    page.mouse.move(corner_x, corner_y + 150, steps=5)
    page.mouse.up()
    dragged = editor.bounding_box()["height"]
    assert dragged > opened["height"] + 100

    editor.focus()
    page.keyboard.press("End")
    page.keyboard.type(" and more")
    assert editor.bounding_box()["height"] == dragged
    page.keyboard.press("Backspace")
    assert editor.bounding_box()["height"] == dragged
    screenshot(page, "edit-box-dragged")

    for n in range(12):  # more lines than the box holds
        page.keyboard.press("Shift+Enter")
        page.keyboard.type(f"line {n}")
    assert editor.bounding_box()["height"] > dragged
    assert editor.evaluate("(el) => el.scrollHeight <= el.clientHeight")
