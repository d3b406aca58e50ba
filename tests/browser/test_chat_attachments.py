"""Files in the chat page: paste, drop and pick them, see them sent, view an image large."""

import base64
import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, hold_requests, json_from, log_in, wait_until_held
from tests.browser.conftest import DESKTOP, PHONE
from tests.e2e.axe import violations
from tests.uploads import files

pytestmark = pytest.mark.browser

TEXT_ONLY_MODEL = "Llama-3.3-70B-Instruct"


def encoded(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Builds File objects in the page from base64 and hands them over as a real clipboard or drop
# would: the page reads event.clipboardData / event.dataTransfer, as with a user's paste or drop.
DISPATCH = """({event, target, items}) => {
    const transfer = new DataTransfer();
    for (const {name, type, data} of items) {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        transfer.items.add(new File([bytes], name, {type}));
    }
    const element = document.querySelector(target);
    if (event === "paste") {
        element.dispatchEvent(new ClipboardEvent("paste", {
            clipboardData: transfer, bubbles: true, cancelable: true}));
        return;
    }
    for (const type of ["dragenter", "dragover", "drop"]) {
        element.dispatchEvent(new DragEvent(type, {
            dataTransfer: transfer, bubbles: true, cancelable: true}));
    }
}"""


def paste(page, *items) -> None:
    page.evaluate(DISPATCH, {"event": "paste", "target": "#composer-input", "items": list(items)})


def drop(page, *items) -> None:
    page.evaluate(DISPATCH, {"event": "drop", "target": "#composer-input", "items": list(items)})


def png(name="screenshot.png", width=64, height=48):
    return {"name": name, "type": "image/png", "data": encoded(files.image_bytes(width, height))}


def pdf(name="report.pdf", *pages):
    data = files.pdf_with_text(*(pages or ("Quarterly numbers are up",)))
    return {"name": name, "type": "application/pdf", "data": encoded(data)}


def text_file(name):
    return {"name": name, "type": "text/plain", "data": encoded(b"a line of notes\n")}


def tray(page):
    return page.get_by_role("list", name="Attached files")


def wait_until_attached(page, count: int) -> None:
    expect(tray(page).locator(".draft[data-status=ready]")).to_have_count(count)


def test_pasted_image_and_dropped_pdf_reach_the_model_and_show_on_the_message(
    logged_in_page, page_watch
):
    page = logged_in_page
    chat = ChatPage(page)
    paste(page, png())
    drop(page, pdf("report.pdf", "Page one", "Page two"))
    wait_until_attached(page, 2)
    expect(tray(page)).to_contain_text("screenshot.png")
    expect(tray(page)).to_contain_text("2 pages")
    chat.send("What do these show?")
    chat.wait_for_status("complete")
    # The simulator says what arrived upstream: the image's pixels and the document's name.
    content = chat.answer_content()
    assert "Received 1 image (64×48)" in content, content
    assert "report.pdf (2 pages)" in content, content
    expect(tray(page)).to_be_hidden()  # the files went with the message
    question = chat.questions.last
    thumb = question.get_by_role("button", name="View image screenshot.png")
    expect(thumb).to_be_visible()
    chip = question.get_by_role("link", name="Download report.pdf")
    expect(chip).to_contain_text("2 pages")
    # The chip downloads through the access-checked endpoint.
    with page.expect_download() as download:
        chip.click()
    assert download.value.suggested_filename == "report.pdf"
    # Reloaded, the conversation shows the same files.
    page.reload()
    page.wait_for_selector("html[data-socket=open]")
    expect(
        chat.questions.last.get_by_role("button", name="View image screenshot.png")
    ).to_be_visible()
    expect(chat.questions.last.get_by_role("link", name="Download report.pdf")).to_be_visible()
    assert page_watch.page_errors == []
    assert page_watch.console_errors == []


def test_image_viewer_opens_large_and_escape_closes_it_back_to_the_thumbnail(
    logged_in_page, page_watch
):
    page = logged_in_page
    chat = ChatPage(page)
    paste(page, png("wide.png", 320, 200))
    wait_until_attached(page, 1)
    chat.send("Look")
    chat.wait_for_status("complete")
    thumb = chat.questions.last.get_by_role("button", name="View image wide.png")
    thumb.focus()
    page.keyboard.press("Enter")
    viewer = page.get_by_role("dialog", name="wide.png")
    expect(viewer).to_be_visible()
    image = viewer.get_by_role("img", name="wide.png")
    expect(image).to_be_visible()
    # The picture itself loaded from the checked endpoint, at its own size.
    page.wait_for_function(
        "() => document.querySelector('[data-viewer-image]').naturalWidth === 320"
    )
    expect(viewer.get_by_role("button", name="Close image")).to_be_focused()
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(thumb).to_be_focused()
    # Escape closed the viewer only: the answer was not touched and no error surfaced.
    expect(chat.last_answer()).to_have_attribute("data-status", "complete")
    # The close button and a click on the backdrop close it too.
    thumb.click()
    expect(viewer).to_be_visible()
    viewer.get_by_role("button", name="Close image").click()
    expect(viewer).to_be_hidden()
    thumb.click()
    expect(viewer).to_be_visible()
    page.mouse.click(5, 5)
    expect(viewer).to_be_hidden()
    assert page_watch.page_errors == []


def test_text_only_model_refuses_images_and_says_why_but_takes_documents(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    note = page.locator("#attach-note")
    expect(note).to_be_hidden()  # the default model sees images
    page.get_by_label("Model", exact=True).select_option(TEXT_ONLY_MODEL)
    expect(note).to_be_visible()
    expect(note).to_have_text("This model does not see images: documents only.")
    attach = page.locator("#attach-button")
    expect(attach).to_have_accessible_name("Attach documents (this model does not see images)")
    accept = page.locator("#attach-input").get_attribute("accept")
    assert ".pdf" in accept and ".png" not in accept and ".jfif" not in accept
    paste(page, png())
    notice = page.locator("#chat-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text(f"{TEXT_ONLY_MODEL} does not see images")
    expect(tray(page)).to_be_hidden()  # nothing was uploaded
    drop(page, pdf())
    wait_until_attached(page, 1)
    chat.send("Summarise")
    chat.wait_for_status("complete")
    assert "report.pdf (1 page)" in chat.answer_content()


def test_images_in_the_composer_block_sending_to_a_text_only_model(logged_in_page):
    page = logged_in_page
    paste(page, png())
    wait_until_attached(page, 1)
    page.get_by_label("Message", exact=True).fill("Describe it")
    send = page.get_by_role("button", name="Send message")
    expect(send).to_be_enabled()
    page.get_by_label("Model", exact=True).select_option(TEXT_ONLY_MODEL)
    expect(send).to_be_disabled()
    expect(page.locator("#attach-note")).to_have_text(
        "This model does not see images: remove them or choose another model."
    )
    expect(tray(page).locator(".draft[data-blocked]")).to_contain_text("screenshot.png")
    page.get_by_label("Message", exact=True).press("Enter")
    expect(page.locator("#chat-notice")).to_contain_text("does not see images")
    expect(ChatPage(page).questions).to_have_count(0)
    page.get_by_role("button", name="Remove screenshot.png").click()
    expect(tray(page)).to_be_hidden()
    expect(send).to_be_enabled()


def test_a_file_taken_out_while_it_uploads_is_not_kept(logged_in_page, app_server, user):
    """The server may have the whole file by then (it is still checking it): once it answers,
    the page deletes what it stored, as it does for a file taken out after its upload."""
    page = logged_in_page
    held = hold_requests(page, "**/api/uploads/")
    paste(page, png("wrong.png"))
    wait_until_held(page, held, "the upload")
    page.get_by_role("button", name="Remove wrong.png").click()
    expect(tray(page)).to_be_hidden()
    route = held[0]
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        route.fulfill(response=route.fetch())  # the server stores it, as it would meanwhile
    assert deleted.value.status == 204
    code = (
        "from chatapp.uploads.models import Upload\n"
        f"print(Upload.objects.filter(owner__username={user.username!r}).count())"
    )
    assert json_from(app_server.run_python(code)) == 0


def test_caps_on_count_and_size_are_enforced_with_a_message(logged_in_page, app_server):
    page = logged_in_page
    drop(page, *(text_file(f"notes{i}.txt") for i in range(6)))
    wait_until_attached(page, 5)  # UPLOAD_MAX_FILES_PER_MESSAGE
    notice = page.locator("#chat-notice")
    expect(notice).to_contain_text("notes5.txt was not attached: a message takes at most 5 files.")
    page.get_by_role("button", name="Remove notes0.txt").click()
    wait_until_attached(page, 4)
    # One byte over UPLOAD_MAX_FILE_BYTES (10 MB) is refused before any upload starts.
    page.evaluate(
        """() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(10 * 1024 * 1024 + 1)], "huge.txt"));
            document.querySelector("#composer-input").dispatchEvent(new ClipboardEvent("paste", {
                clipboardData: transfer, bubbles: true, cancelable: true}));
        }"""
    )
    expect(notice).to_contain_text("huge.txt is too large: files may be at most 10 MB.")
    wait_until_attached(page, 4)


# A small PNG with megabytes of zeros after it: big as picked, a few hundred bytes once cleaned.
PADDED_PNG = """({name, data, padding}) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes, new Uint8Array(padding)], name, {type: "image/png"}));
    document.querySelector("#composer-input").dispatchEvent(new ClipboardEvent("paste", {
        clipboardData: transfer, bubbles: true, cancelable: true}));
}"""


def test_the_message_size_cap_counts_stored_files_at_their_stored_size(logged_in_page):
    """The tray shows a cleaned image's stored size, and the server counts that size against
    UPLOAD_MAX_MESSAGE_BYTES (30 MB): so does the page's check before the next file."""
    page = logged_in_page
    image = encoded(files.image_bytes())
    for number in range(4):  # 8 MB each as picked: 32 MB together
        args = {"name": f"photo{number}.png", "data": image, "padding": 8 * 1024 * 1024}
        page.evaluate(PADDED_PNG, args)
        wait_until_attached(page, number + 1)
    expect(tray(page).locator(".draft-detail").last).to_have_text(re.compile(r"^\d+ bytes$"))
    ChatPage(page).send("Four photos")
    expect(ChatPage(page).questions.last.locator(".attachment-thumb")).to_have_count(4)


def test_files_added_together_are_announced_together(logged_in_page):
    page = logged_in_page
    announcer = page.locator("#chat-announcer")
    drop(page, png("red.png"), text_file("notes.txt"))
    wait_until_attached(page, 2)
    expect(announcer).to_have_text("2 files attached: red.png, notes.txt")
    paste(page, text_file("more.txt"))
    wait_until_attached(page, 3)
    expect(announcer).to_have_text("more.txt attached")
    fake = {"name": "fake.png", "type": "image/png", "data": encoded(b"not an image at all")}
    drop(page, text_file("last.txt"), fake)
    wait_until_attached(page, 4)
    expect(announcer).to_have_text(re.compile(r"^last\.txt attached\. Error: fake\.png is named"))
    # The tray shows each file's state without reading it out a second time.
    expect(tray(page).locator("[role=status], [role=alert]")).to_have_count(0)


def test_the_tray_gives_each_file_s_size(logged_in_page):
    page = logged_in_page
    one = {"name": "one.txt", "type": "text/plain", "data": encoded(b"x")}
    drop(page, one, text_file("notes.txt"))
    wait_until_attached(page, 2)
    details = tray(page).locator(".draft-detail")
    expect(details).to_have_text(["1 byte", "16 bytes"])


def test_a_file_the_server_refuses_shows_its_error_and_blocks_sending(logged_in_page):
    page = logged_in_page
    fake = {"name": "fake.png", "type": "image/png", "data": encoded(b"not an image at all")}
    paste(page, fake)
    failed = tray(page).locator(".draft[data-status=failed]")
    expect(failed).to_contain_text("fake.png is named like an image but its bytes are not")
    page.get_by_label("Message", exact=True).fill("Hello")
    expect(page.get_by_role("button", name="Send message")).to_be_disabled()
    page.get_by_role("button", name="Remove fake.png").click()
    expect(page.get_by_role("button", name="Send message")).to_be_enabled()


def asked_with_a_picture_and_a_pdf(page, chat: ChatPage) -> None:
    paste(page, png())
    drop(page, pdf())
    wait_until_attached(page, 2)
    chat.send("What is this?")
    chat.wait_for_status("complete")


def test_regenerating_an_answer_sends_the_questions_files_again(logged_in_page, sim):
    page = logged_in_page
    chat = ChatPage(page)
    asked_with_a_picture_and_a_pdf(page, chat)
    first = page.evaluate("window.chatPage.state.lastAssistant.id")
    page.get_by_role("button", name="Regenerate").click()
    page.wait_for_function(
        "(first) => { const m = window.chatPage.state.lastAssistant;"
        " return m && m.id !== null && m.id !== first && m.status === 'complete'; }",
        arg=first,
    )
    content = chat.answer_content()
    assert "Received 1 image (64×48) and 1 document: report.pdf (1 page)" in content, content


def test_an_edited_question_keeps_its_files(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    asked_with_a_picture_and_a_pdf(page, chat)
    question = chat.questions.last
    question.hover()
    question.get_by_role("button", name="Edit this question").click()
    editor = question.get_by_label("Edit your question")
    editor.fill("And what is in the report?")
    editor.press("Enter")

    edited = chat.questions.last
    expect(edited.locator(".bubble")).to_have_text("And what is in the report?")
    expect(edited.get_by_role("group", name="Version 2 of 2")).to_be_visible()
    chat.wait_for_status("complete")
    content = chat.answer_content()
    assert "Received 1 image (64×48) and 1 document: report.pdf (1 page)" in content, content
    expect(edited.get_by_role("button", name="View image screenshot.png")).to_be_visible()
    expect(edited.get_by_role("link", name="Download report.pdf")).to_be_visible()
    page.reload()  # the new version's files are its own
    expect(chat.questions.last.get_by_role("link", name="Download report.pdf")).to_be_visible()


def test_an_edit_with_no_words_asks_about_the_files_it_keeps(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    asked_with_a_picture_and_a_pdf(page, chat)
    question = chat.questions.last
    question.hover()
    question.get_by_role("button", name="Edit this question").click()
    question.get_by_role("button", name="Remove screenshot.png").click()
    editor = question.get_by_label("Edit your question")
    editor.fill("")
    editor.press("Enter")

    edited = chat.questions.last
    expect(edited.get_by_role("group", name="Version 2 of 2")).to_be_visible()
    chat.wait_for_status("complete")
    assert "Received 1 document: report.pdf (1 page)" in chat.answer_content()
    expect(edited.get_by_role("link", name="Download report.pdf")).to_be_visible()


def test_an_edit_can_drop_a_file_the_server_no_longer_stores(logged_in_page, app_server):
    page = logged_in_page
    chat = ChatPage(page)
    asked_with_a_picture_and_a_pdf(page, chat)
    question = chat.questions.last
    question_id = page.evaluate("window.chatPage.state.lastQuestion.id")
    # The stored PDF is lost (a storage failure): an edit keeping it would be refused.
    app_server.run_python(f"""
from chatapp.uploads.models import Upload
lost = Upload.objects.get(message_id={question_id}, name="report.pdf")
lost.file.storage.delete(lost.file.name)
""")
    question.hover()
    question.get_by_role("button", name="Edit this question").click()
    question.get_by_label("Edit your question").fill("And the report?")
    question.get_by_label("Edit your question").press("Enter")
    expect(page.locator("#chat-notice")).to_contain_text(
        "report.pdf is no longer stored: edit the question again without it."
    )
    question = chat.questions.last
    question.hover()
    question.get_by_role("button", name="Edit this question").click()
    editor_files = question.get_by_role("list", name="Files this version keeps")
    expect(editor_files.get_by_role("listitem")).to_have_count(2)
    question.get_by_role("button", name="Remove report.pdf").click()
    expect(editor_files.get_by_role("listitem")).to_have_text(["screenshot.png"])
    question.get_by_label("Edit your question").press("Enter")
    edited = chat.questions.last
    expect(edited.get_by_role("group", name="Version 2 of 2")).to_be_visible()
    chat.wait_for_status("complete")
    assert "Received 1 image (64×48)" in chat.answer_content()
    expect(edited.get_by_role("button", name="View image screenshot.png")).to_be_visible()
    expect(edited.get_by_role("link", name="Download report.pdf")).to_have_count(0)


def test_a_refused_send_gives_its_files_back_to_the_composer(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    drop(page, pdf())
    wait_until_attached(page, 1)
    # The upload disappears behind the page's back: the server refuses the send (not_found).
    page.evaluate(
        """async () => {
            const id = window.chatPage.state.drafts[0].upload.id;
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            await fetch(`/api/uploads/${id}/`, {method: "DELETE", headers: {"X-CSRFToken": token}});
        }"""
    )
    chat.send("Read this")
    expect(page.locator("#chat-notice")).to_be_visible()
    expect(chat.questions).to_have_count(0)
    expect(page.get_by_label("Message", exact=True)).to_have_value("Read this")
    # Back as a file that cannot go (the server no longer has it), not one to send again and
    # again: it is to be removed, or attached anew.
    failed = tray(page).locator(".draft[data-status=failed]")
    expect(failed).to_contain_text("report.pdf")
    expect(failed).to_contain_text("attach it again")
    expect(chat.send_button).to_be_disabled()
    page.get_by_role("button", name="Remove report.pdf").click()
    expect(chat.send_button).to_be_enabled()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(
    "viewport", [{"width": 1440, "height": 900}, PHONE], ids=["desktop", "phone"]
)
def test_files_fit_the_composer_and_the_message_at_every_width(
    browser, app_server, user, sim, viewport, scheme, screenshot
):
    context = browser.new_context(base_url=app_server.url, viewport=viewport, color_scheme=scheme)
    page = context.new_page()
    log_in(page, user)
    chat = ChatPage(page)
    paste(page, png("whiteboard.png", 640, 400))
    drop(page, pdf("quarterly-report-with-a-long-name.pdf", "One", "Two", "Three"))
    wait_until_attached(page, 2)
    chat.send("Compare the whiteboard with the report")
    chat.wait_for_status("complete")
    paste(page, png("diagram.png", 200, 300))
    drop(page, text_file("notes.md"))
    wait_until_attached(page, 2)
    page.get_by_label("Message", exact=True).fill("And these?")
    chat.questions.last.scroll_into_view_if_needed()
    name = f"attachments-{'desktop' if viewport['width'] > 500 else 'phone'}-{scheme}"
    screenshot(page, name)
    # Nothing spills sideways: the page, the tray and the message's files stay in view.
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    for box in (tray(page).bounding_box(), chat.questions.last.bounding_box()):
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    send = page.get_by_role("button", name="Send message").bounding_box()
    assert send["x"] + send["width"] <= viewport["width"]
    chat.questions.last.get_by_role("button", name="View image whiteboard.png").click()
    page.get_by_role("dialog", name="whiteboard.png").wait_for()
    screenshot(page, f"{name}-viewer")
    page.keyboard.press("Escape")
    page.get_by_label("Model", exact=True).select_option(TEXT_ONLY_MODEL)
    note = page.locator("#attach-note")
    expect(note).to_be_visible()
    box = note.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    screenshot(page, f"{name}-text-only")
    context.close()


def test_retry_after_a_dropped_connection_sends_the_files_again(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    paste(page, png())
    drop(page, pdf())
    wait_until_attached(page, 2)
    chat.drop_the_connection_at_the_next_send()  # the frame is lost, then the socket closes
    chat.send("What is in these?")
    notice = page.locator("#chat-notice")
    expect(notice).to_contain_text("The connection dropped while sending")
    expect(tray(page).locator(".draft[data-status=ready]")).to_have_count(2)
    page.wait_for_selector("html[data-socket=open]")
    page.get_by_role("button", name="Retry").click()
    chat.wait_for_status("complete")
    content = chat.answer_content()
    assert "Received 1 image (64×48) and 1 document: report.pdf (1 page)" in content, content
    expect(tray(page)).to_be_hidden()  # the files went with the question again
    expect(chat.questions).to_have_count(1)


def test_a_file_name_with_markup_is_shown_as_text(logged_in_page, page_watch):
    page = logged_in_page
    chat = ChatPage(page)
    name = '<img src=x onerror="window.pwned=1">.md'
    drop(page, text_file(name))
    wait_until_attached(page, 1)
    expect(tray(page)).to_contain_text(name)  # the composer shows the name as typed, as text
    chat.send("Read it")
    chat.wait_for_status("complete")
    chip = chat.questions.last.locator(".file-chip")
    expect(chip).to_be_visible()
    assert "<" not in chip.inner_text()  # the server keeps a name without markup characters
    assert page.evaluate("window.pwned") is None
    assert page.locator("img[src=x]").count() == 0
    assert page_watch.page_errors == []


def test_pasted_text_stays_text_even_with_a_picture_of_it_on_the_clipboard(logged_in_page):
    page = logged_in_page
    page.evaluate(
        """(data) => {
            const transfer = new DataTransfer();
            transfer.setData("text/plain", "A1 B1");
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], "image.png", {type: "image/png"}));
            const input = document.querySelector("#composer-input");
            const event = new ClipboardEvent("paste", {
                clipboardData: transfer, bubbles: true, cancelable: true});
            input.dispatchEvent(event);
            window.pasteTaken = event.defaultPrevented;
        }""",
        encoded(files.image_bytes()),
    )
    assert page.evaluate("window.pasteTaken") is False  # the browser inserts the text itself
    expect(tray(page)).to_be_hidden()
    assert page.evaluate("window.chatPage.state.drafts.length") == 0


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_files_in_the_composer_the_message_and_the_viewer_have_no_axe_violations(
    browser, app_server, user, sim, scheme
):
    context = browser.new_context(
        base_url=app_server.url, viewport=DESKTOP, color_scheme=scheme, bypass_csp=True
    )
    page = context.new_page()
    log_in(page, user)
    chat = ChatPage(page)
    paste(page, png())
    drop(page, pdf())
    wait_until_attached(page, 2)
    chat.send("Look at these")
    chat.wait_for_status("complete")
    paste(page, png("next.png"))
    paste(page, {"name": "fake.png", "type": "image/png", "data": encoded(b"not an image")})
    wait_until_attached(page, 1)
    expect(tray(page).locator(".draft[data-status=failed]")).to_have_count(1)
    page.get_by_label("Model", exact=True).select_option(TEXT_ONLY_MODEL)
    expect(page.locator("#attach-note")).to_be_visible()
    assert violations(page) == []
    chat.questions.last.get_by_role("button", name="View image screenshot.png").click()
    expect(page.get_by_role("dialog", name="screenshot.png")).to_be_visible()
    assert violations(page) == []
    context.close()


def test_a_file_dropped_on_the_sidebar_is_attached_too(logged_in_page):
    page = logged_in_page
    page.evaluate(DISPATCH, {"event": "drop", "target": "#sidebar", "items": [pdf()]})
    wait_until_attached(page, 1)
    assert page.url.endswith("/")
    expect(tray(page)).to_contain_text("report.pdf")


def overlap(one: dict, other: dict) -> bool:
    return not (
        one["x"] + one["width"] <= other["x"]
        or other["x"] + other["width"] <= one["x"]
        or one["y"] + one["height"] <= other["y"]
        or other["y"] + other["height"] <= one["y"]
    )


def test_a_new_chats_composer_at_phone_width_fits_the_note_of_a_text_only_model(
    phone_page, screenshot
):
    """The note, the system prompt picker and the send button each keep their own place."""
    page = phone_page
    page.get_by_label("Model", exact=True).select_option(TEXT_ONLY_MODEL)
    note = page.locator("#attach-note")
    expect(note).to_be_visible()
    picker = page.get_by_label("System prompt", exact=True)
    expect(picker).to_be_visible()
    screenshot(page, "composer-phone-text-only")
    boxes = [
        page.locator("#attach-button").bounding_box(),
        note.bounding_box(),
        picker.bounding_box(),
        page.get_by_role("button", name="Send message").bounding_box(),
    ]
    for box in boxes:
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    for i, one in enumerate(boxes):
        assert not any(overlap(one, other) for other in boxes[i + 1 :]), boxes
