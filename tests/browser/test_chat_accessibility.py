"""The chat page for screen readers and long messages: live announcements, a growing composer."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, log_in
from tests.e2e.contrast import placeholder_contrast
from tests.support.polling import wait_for

pytestmark = pytest.mark.browser


def announcer(page):
    return page.locator("#chat-announcer")


def test_live_region_announces_milestones_not_tokens(logged_in_page):
    chat = ChatPage(logged_in_page)
    region = announcer(logged_in_page)
    expect(region).to_have_attribute("aria-live", "polite")
    chat.send("[sim:pace tps=8] [sim:long tokens=400] Count slowly")
    chat.wait_for_text_longer_than(0)
    expect(region).to_have_text("Answering…")
    chat.stop_button.click()
    chat.wait_for_status("stopped")
    expect(region).to_have_text("Stopped")
    chat.send("Hello again")
    chat.wait_for_status("complete")
    expect(region).to_have_text("Answer complete")
    assert region.bounding_box()["height"] <= 1  # visually hidden, still read out


# Anything in the message list that a screen reader would read out by itself.
LIVE = "[aria-live], [role=log], [role=status], [role=alert]"


def test_live_region_announces_an_error_once(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("[sim:fault=401] Hello")
    chat.wait_for_status("error")
    expect(announcer(page)).to_contain_text("Error:")
    notice = chat.last_answer().locator(".message-notice")
    expect(notice).to_be_visible()  # shown under the answer, not said a second time
    expect(notice).not_to_have_attribute("role", "alert")
    expect(page.locator("#chat-notice")).to_be_hidden()
    expect(page.locator("#messages").locator(LIVE)).to_have_count(0)


def test_the_message_list_is_a_region_and_opening_a_conversation_is_not_read_out(
    logged_in_page,
):
    page = logged_in_page
    chat = ChatPage(page)
    messages = page.get_by_role("region", name="Messages")
    expect(messages).not_to_have_attribute("aria-live", "polite")
    expect(messages).not_to_have_attribute("role", "log")
    chat.send("[sim:long tokens=200] Tell me a long story")
    chat.wait_for_status("complete")
    expect(messages.locator(LIVE)).to_have_count(0)  # nor is the streamed answer
    page.reload()
    page.wait_for_selector("html[data-socket=open]")
    chat.wait_for_status("complete")
    expect(messages).to_contain_text("Tell me a long story")
    expect(announcer(page)).to_have_text("")


def test_composer_grows_with_its_text_then_scrolls(logged_in_page):
    chat = ChatPage(logged_in_page)
    one_line = chat.input.bounding_box()["height"]
    chat.input.fill("\n".join(f"line {n}" for n in range(4)))
    grown = chat.input.bounding_box()["height"]
    assert grown > one_line * 2
    chat.input.fill("\n".join(f"line {n}" for n in range(60)))
    shown, full, cap = chat.input.evaluate(
        "(el) => [el.clientHeight, el.scrollHeight, parseFloat(getComputedStyle(el).maxHeight)]"
    )
    assert shown < full  # at its cap the box scrolls instead of growing
    assert chat.input.bounding_box()["height"] <= cap + 1
    chat.input.fill("")
    assert abs(chat.input.bounding_box()["height"] - one_line) < 1  # back to one line


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_placeholders_are_readable_in_both_themes(browser, app_server, user, sim, scheme):
    context = browser.new_context(base_url=app_server.url, color_scheme=scheme)
    try:
        page = context.new_page()
        log_in(page, user)
        for field in ("#composer-input", "#conversation-search"):
            assert placeholder_contrast(page, field) >= 4.5, field
    finally:
        context.close()


# Each change of a live region is read out, a text put back as it was included: what each of
# the chat page's live regions said, change by change.
RECORD_LIVE_CHANGES = """() => {
    window.liveChanges = {};
    for (const id of ["chat-announcer", "chat-notice", "connection-status"]) {
        const region = document.getElementById(id);
        window.liveChanges[id] = [];
        new MutationObserver(() => window.liveChanges[id].push(region.textContent.trim()))
            .observe(region, {childList: true, characterData: true, subtree: true});
    }
}"""


def test_live_regions_are_rewritten_only_when_what_they_say_changes(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    page.evaluate(RECORD_LIVE_CHANGES)
    chat.send("[sim:pace tps=20] [sim:long tokens=80] Count for me")
    chat.wait_for_text_longer_than(0)
    # A notice shown while the answer streams on.
    empty = {"name": "empty.txt", "mimeType": "text/plain", "buffer": b""}
    page.set_input_files("#attach-input", files=[empty])
    expect(page.locator("#chat-notice")).to_contain_text("empty.txt is empty")
    chat.wait_for_status("complete")
    changes = page.evaluate("window.liveChanges")
    assert changes["chat-announcer"] == ["Answering…", "Answer complete"]
    said = changes["chat-notice"]
    assert said and all(text.startswith("empty.txt is empty") for text in said)
    assert len(said) == 1, said


# What the announcer held each time the page was drawn (the accessibility tree is updated with
# the drawing: a text emptied and filled again before it is drawn is not a change to hear).
RECORD_DRAWN_ANNOUNCEMENTS = """() => {
    window.drawnAnnouncements = [];
    const region = document.getElementById("chat-announcer");
    // A resize observer is called as each frame is drawn, after every animation frame
    // callback and the layout: a box that changes size every frame calls it every frame.
    const box = document.createElement("div");
    document.body.append(box);
    new ResizeObserver(() => {
        const said = window.drawnAnnouncements;
        if (said.at(-1) !== region.textContent) said.push(region.textContent);
    }).observe(box);
    const frame = () => {
        box.style.width = box.style.width === "1px" ? "2px" : "1px";
        requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
}"""


def test_a_second_copy_is_announced_again(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    chat.send("Hello")
    chat.wait_for_status("complete")
    page.evaluate(RECORD_DRAWN_ANNOUNCEMENTS)
    copy = chat.last_answer().get_by_role("button", name="Copy answer")

    def drawn() -> list[str]:
        return page.evaluate("window.drawnAnnouncements")

    copy.click()
    wait_for(lambda: drawn()[-1:] == ["Copied"], "Copied, drawn")
    copy.click()
    # Emptied, drawn so, then filled again: heard as new words.
    wait_for(lambda: drawn()[-3:] == ["Copied", "", "Copied"], "Copied, drawn again")
