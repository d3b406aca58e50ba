"""Rendering answers: markdown, highlighted code, copy buttons, and nothing unsafe."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, json_from, log_in
from tests.browser.conftest import MODEL

pytestmark = pytest.mark.browser

# The simulator restates each question (up to 200 characters) inside its answer, so these
# payloads come back as model output.
PAYLOADS = [
    '<img src="http://127.0.0.2:9/x.png" onerror="window.pwned=1">'
    '<script>window.pwned=2</script><svg onload="window.pwned=3"></svg>',
    "[click me](javascript:window.pwned=4) ![pic](http://127.0.0.2:9/y.png) "
    '<iframe src="http://127.0.0.2:9/"></iframe>',
    '<a href="http://127.0.0.2:9/" onmouseover="window.pwned=5">hover</a> '
    "<style>body{display:none}</style> [data](data:text/html,hi) [ok](https://example.com/)",
]


def test_markdown_renders_with_highlighted_code(logged_in_page):
    chat = ChatPage(logged_in_page)
    chat.send("Show me some **code**")
    chat.wait_for_status("complete")
    answer = chat.last_answer()
    assert answer.locator(".markdown em").first.inner_text() == "Show me some code"
    assert answer.locator(".markdown em strong").inner_text() == "code"
    assert answer.locator(".markdown ul > li").count() == 3
    block = answer.locator(".code-block")
    assert block.locator(".code-language").inner_text() == "python"
    expect(block.locator("code.hljs .hljs-built_in").first).to_be_visible()  # print: coloured
    assert block.get_by_role("button", name="Copy code").is_visible()
    assert answer.get_by_role("button", name="Copy answer").is_visible()


def test_highlight_js_is_fetched_only_once_an_answer_shows_code(page, user):
    """A third of the chat's script bytes: a chat with no code in it never needs them."""
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    log_in(page, user)
    assert any("/static/js/chat/markdown" in url for url in fetched)
    assert not any("/vendor/highlight/" in url for url in fetched)
    chat = ChatPage(page)
    chat.send("Show me some code")
    chat.wait_for_status("complete")
    block = chat.last_answer().locator(".code-block")
    expect(block.locator("code.hljs .hljs-built_in").first).to_have_text("print")
    assert any("/vendor/highlight/" in url for url in fetched)


def test_copy_buttons_copy_the_code_and_the_whole_answer(logged_in_page, context, app_server):
    """And say so to screen readers, through the page's announcer."""
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_server.url)
    page = logged_in_page
    announcer = page.locator("#chat-announcer")
    chat = ChatPage(page)
    chat.send("Copy this please")
    chat.wait_for_status("complete")
    expect(announcer).to_have_text("Answer complete")
    answer = chat.last_answer()
    answer.get_by_role("button", name="Copy code").click()
    expect(announcer).to_have_text("Copied")
    code = answer.locator(".code-block code").inner_text()
    assert page.evaluate("navigator.clipboard.readText()") == code
    assert code.startswith("question = 'Copy this please'")
    page.evaluate("window.chatPage.announce('')")
    expect(announcer).to_have_text("")
    answer.get_by_role("button", name="Copy answer").click()
    expect(announcer).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == chat.answer_content()
    assert "```python" in chat.answer_content()


def test_unsafe_answer_runs_nothing_and_loads_nothing(logged_in_page, page_watch):
    page = logged_in_page
    chat = ChatPage(page)
    for index, payload in enumerate(PAYLOADS):
        chat.send(payload)
        chat.wait_for_status("complete", chat.answers.nth(index))
    markdown = page.locator(".message-assistant .markdown")
    assert "<img src=" in markdown.nth(0).inner_text()  # raw HTML is shown as text
    # Model text never becomes these elements (the page's own copy-button icons aside).
    dangerous = page.evaluate(
        """[...document.querySelectorAll('.markdown, .bubble')].flatMap(root =>
            [...root.querySelectorAll('img, script, svg, iframe, style, math, object, embed,'
                + ' form, input, [style], [onerror], [onload], [onmouseover]')]
            .filter(el => !el.closest('.code-header')).map(el => el.outerHTML))"""
    )
    assert dangerous == []
    for link in markdown.locator("a").all():
        href = link.get_attribute("href")
        assert href is None or href.startswith(("https:", "http:", "mailto:"))
        if href:
            assert link.get_attribute("rel") == "noopener noreferrer"
            assert link.get_attribute("target") == "_blank"
    markdown.nth(1).get_by_text("click me", exact=True).click()
    markdown.nth(2).hover()
    assert page.evaluate("window.pwned") is None
    assert markdown.nth(2).get_by_role("link", name="ok").get_attribute("href") == (
        "https://example.com/"
    )
    assert page_watch.offsite_requests == []
    assert page_watch.console_errors == []  # a CSP violation would be reported here
    assert page_watch.page_errors == []


# Markdown the simulator does not write (it restates a question on one line): stored as the
# answer's text, then read back as the page loads it.
TABLE_ANSWER = (
    "| Option | Notes |\n|---|---|\n"
    "| Express | https://example.com/a/very/long/path/that/keeps/going/and/going |\n"
    "| Pickup | Pneumonoultramicroscopicsilicovolcanoconiosis |\n\n"
    "```\nselect the plain words from the list\n```\n"
)


def test_long_links_break_in_their_cell_and_unnamed_code_stays_plain(logged_in_page, app_server):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("A table, please")
    chat.wait_for_status("complete")
    answer_id = int(chat.last_answer().get_attribute("data-message-id"))
    app_server.run_python(
        "from chatapp.chat.models import Message\n"
        f"Message.objects.filter(pk={answer_id}).update(content={TABLE_ANSWER!r})\n"
    )
    page.reload()
    chat.wait_for_status("complete")
    cells = chat.last_answer().locator(".markdown td")
    assert cells.nth(1).get_attribute("class") == "cell-breaks"  # the URL may break
    assert cells.nth(0).get_attribute("class") is None  # words stay whole
    assert cells.nth(3).get_attribute("class") is None  # however long
    block = chat.last_answer().locator(".code-block")
    assert block.locator(".code-language").inner_text() == "text"  # no guessed language
    assert block.locator("code [class^='hljs-']").count() == 0


# A few kilobytes nested deeper than the renderer's recursion goes (marked throws "Maximum call
# stack size exceeded"): quotes inside quotes, emphasis inside emphasis.
TOO_DEEP = ">" * 5000 + " quoted\n\n" + "*" * 20000 + "starred" + "*" * 20000


def test_an_answer_nested_too_deep_for_markdown_shows_as_text(logged_in_page, app_server):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("First question")
    chat.wait_for_status("complete")
    chat.send("Second **question**")
    chat.wait_for_status("complete", chat.answers.nth(1))
    first = int(chat.answers.nth(0).get_attribute("data-message-id"))
    app_server.run_python(
        "from chatapp.chat.models import Message\n"
        f"Message.objects.filter(pk={first}).update(content={TOO_DEEP!r})\n"
    )
    page.reload()
    chat.wait_for_status("complete", chat.answers.nth(1))
    # The answer after it still renders as Markdown; this one is shown as the text it is.
    expect(chat.answers.nth(1).locator(".markdown strong")).to_have_text("question")
    text = chat.answers.nth(0).locator(".markdown").inner_text()
    assert "quoted" in text
    assert "starred" in text


# Some grammars take time growing with the square of a block's length on inputs like these
# (40,000 characters of quotes in an INI block: seconds of the page's only thread, per render).
SLOW_TO_COLOUR = "```ini\n[section]\n" + '"\\' * 20000 + "\n```\n\n```python\nprint(1)\n```\n"


def test_code_past_the_answers_highlighting_budget_stays_plain(logged_in_page, app_server):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("Some code, please")
    chat.wait_for_status("complete")
    answer_id = int(chat.last_answer().get_attribute("data-message-id"))
    app_server.run_python(
        "from chatapp.chat.models import Message\n"
        f"Message.objects.filter(pk={answer_id}).update(content={SLOW_TO_COLOUR!r})\n"
    )
    page.reload()
    chat.wait_for_status("complete")
    blocks = chat.last_answer().locator(".code-block")
    expect(blocks).to_have_count(2)
    assert blocks.nth(0).locator(".code-language").inner_text() == "ini"
    assert blocks.nth(0).locator("code [class^='hljs-']").count() == 0  # shown as it is
    assert blocks.nth(0).locator("code").inner_text().startswith('[section]\n"\\"\\')
    assert blocks.nth(1).locator("code .hljs-built_in").inner_text() == "print"  # small: coloured


def test_asking_in_a_long_conversation_leaves_the_earlier_answers_as_drawn(
    logged_in_page, app_server, user
):
    page = logged_in_page
    code = f"""
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation, Message
from chatapp.teams.services import ensure_personal_team
owner = get_user_model().objects.get(username={user.username!r})
team = ensure_personal_team(owner)
chat = Conversation.objects.create(team=team, owner=owner, title="Long", model={MODEL!r})
for n in range(30):
    Message.objects.create(conversation=chat, role="user", content=f"Question {{n}}")
    Message.objects.create(conversation=chat, role="assistant", content=f"Answer **{{n}}**")
print(chat.pk)
"""
    conversation = json_from(app_server.run_python(code))
    page.goto(f"/c/{conversation}/")
    chat = ChatPage(page)
    expect(chat.answers.last.locator(".markdown strong")).to_have_text("29")
    # Each answer's text element has its children replaced once each time it is drawn.
    page.evaluate(
        """() => {
            window.redrawn = 0;
            const observer = new MutationObserver((records) => (window.redrawn += records.length));
            for (const body of document.querySelectorAll(".message-assistant .markdown")) {
                observer.observe(body, { childList: true });
            }
        }"""
    )
    chat.send("One more")
    chat.wait_for_status("complete")
    expect(chat.answers).to_have_count(31)
    # Becoming busy and free again, or no longer being the last answer, changes no text.
    assert page.evaluate("window.redrawn") == 0


def nested_list(start: int, stop: int) -> str:
    """Lines of a list nested one level deeper each (hundreds deep: costly to render)."""
    return "".join(f"{'  ' * level}- level {level}\n" for level in range(start, stop))


# Text as it streams: a list already 80 deep, then one level deeper per frame.
DEEP_PIECES = [nested_list(0, 80)] + [nested_list(level, level + 1) for level in range(80, 120)]


def test_a_costly_streaming_answer_is_not_redrawn_at_every_frame(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("[sim:fault=stall_after after=1] A deep list, please")
    chat.wait_for_text_longer_than(0)
    # Each piece arrives as a delta in an animation frame of its own; each time the answer's
    # text is drawn its element's children are replaced once.
    drawn = page.evaluate(
        """async (pieces) => {
            const page = window.chatPage;
            const body = page.messages.elementOf(page.state.streaming).querySelector(".markdown");
            let draws = 0;
            new MutationObserver((records) => (draws += records.length)).observe(body, {
                childList: true,
            });
            for (const text of pieces) {
                await new Promise(requestAnimationFrame);
                const { id, seq } = page.state.streaming;
                const conversation_id = page.state.conversationId;
                const frame = { conversation_id, message_id: id, seq: seq + 1, text };
                page.handleFrame({ type: "message.delta", ...frame });
            }
            await new Promise(requestAnimationFrame);
            return draws;
        }""",
        DEEP_PIECES,
    )
    # Between two draws the page has time to itself: far fewer draws than frames of text.
    assert 1 <= drawn <= len(DEEP_PIECES) // 2
    # The last text is drawn though no frame follows it, the caret after it.
    deepest = chat.last_answer().locator(".markdown li", has_text="level 119").last
    expect(deepest).to_have_text("level 119")
    expect(deepest.locator(".caret")).to_have_count(1)
    chat.stop_button.click()
    chat.wait_for_status("stopped")
