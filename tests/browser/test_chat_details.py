"""The chat page's smaller promises: where things are, what they say and how they look."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, json_from, log_in
from tests.browser.conftest import DESKTOP, PHONE
from tests.browser.test_chat_attachments import drop

pytestmark = pytest.mark.browser

TABLE = """| Identifier | Amount | Status |
|:-----------|-------:|:------:|
| Pneumonoultramicroscopicsilicovolcanoconiosis | 1234567.89 | approved |
| Short | 5 | Incomprehensibilities |
"""

# The table's cells and headers as drawn now: each cell's height, line height and padding,
# whether its box scrolls, and how the numbers' column and the status column align.
MEASURE_TABLE = """() => {
  const named = (text) =>
    [...document.querySelectorAll(".markdown th, .markdown td")].find(
      (el) => el.textContent.trim() === text,
    );
  const lines = (el) => {
    const style = getComputedStyle(el);
    return {
      height: el.getBoundingClientRect().height,
      lineHeight: parseFloat(style.lineHeight),
      padding: parseFloat(style.paddingTop) + parseFloat(style.paddingBottom),
    };
  };
  const box = document.querySelector(".markdown .table-scroll");
  const words = ["Pneumonoultramicroscopicsilicovolcanoconiosis", "Incomprehensibilities"];
  return {
    cells: Object.fromEntries(words.map((word) => [word, lines(named(word))])),
    boxScrolls: box.scrollWidth > box.clientWidth,
    align: Object.fromEntries(
      ["Amount", "5", "Status"].map((text) => [text, getComputedStyle(named(text)).textAlign]),
    ),
  };
}"""


def seeded_conversation(app_server, user, content: str, status: str = "complete") -> int:
    code = f"""
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation, Message
from chatapp.teams.services import ensure_personal_team
owner = get_user_model().objects.get(username={user.username!r})
team = ensure_personal_team(owner)
conversation = Conversation.objects.create(team=team, owner=owner, title="Seeded", model="m")
Message.objects.create(conversation=conversation, role="user", content="Show me")
Message.objects.create(conversation=conversation, role="assistant", content={content!r},
                       status={status!r})
print(conversation.pk)
"""
    return json_from(app_server.run_python(code))


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_tables_scroll_in_their_own_box_keep_words_whole_and_align(
    browser, app_server, user, sim, viewport, screenshot
):
    context = browser.new_context(base_url=app_server.url, viewport=viewport)
    page = context.new_page()
    log_in(page, user)
    conversation = seeded_conversation(app_server, user, TABLE)
    page.goto(f"/c/{conversation}/")
    table = page.locator(".markdown table")
    table.wait_for()
    box = page.locator(".markdown .table-scroll")
    # expect retries: the answer may be drawn again once the socket's snapshot arrives.
    expect(box).to_have_css("overflow-x", "auto")
    expect(box).to_have_attribute("tabindex", "0")  # keyboards can scroll it
    # The page itself never scrolls sideways; the box does when the table is wider.
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    # Measured in one evaluate: the answer may be drawn again between two of them, and an
    # element of the old drawing has no computed style.
    table_style = page.evaluate(MEASURE_TABLE)
    # Long words stay whole: each one-word cell holds one line.
    for word in ["Pneumonoultramicroscopicsilicovolcanoconiosis", "Incomprehensibilities"]:
        cell = table_style["cells"][word]
        assert cell["height"] < cell["lineHeight"] * 1.5 + cell["padding"] + 2
    if viewport is PHONE:  # too wide for a phone: the box scrolls, not the page
        assert table_style["boxScrolls"]
    assert table_style["align"] == {"Amount": "right", "5": "right", "Status": "center"}
    screenshot(page, f"table-{viewport['width']}")
    context.close()


def test_the_streaming_caret_sits_at_the_end_of_the_last_line(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("[sim:pace tps=6] [sim:long tokens=400] A list please")
    caret = chat.last_answer().locator(".caret")
    # Wait until the numbered lines stream (the last element is then a paragraph or list).
    chat.wait_for_text_longer_than(400)
    caret.wait_for()
    # Measured in one go: each frame of the stream redraws the answer.
    where = chat.last_answer().evaluate(
        """(answer) => {
            const caret = answer.querySelector('.caret');
            let text = caret.previousSibling;
            while (text && !text.textContent.trim()) text = text.previousSibling;
            const range = document.createRange();
            range.selectNodeContents(text);
            const rects = [...range.getClientRects()];
            const line = rects[rects.length - 1];
            const box = caret.getBoundingClientRect();
            return {tag: caret.parentElement.tagName, lineTop: line.top, lineRight: line.right,
                    caretTop: box.top, caretLeft: box.left, lineHeight: line.height};
        }"""
    )
    # Inside the last block, on the line of the last word, right after it.
    assert where["tag"] in ("P", "LI", "EM", "STRONG", "CODE")
    assert abs(where["caretTop"] - where["lineTop"]) < where["lineHeight"] / 2
    assert 0 <= where["caretLeft"] - where["lineRight"] < 10
    chat.stop_button.click()
    chat.wait_for_status("stopped")
    expect(caret).to_have_count(0)


def test_a_stopped_answer_shows_its_token_count(logged_in_page):
    chat = ChatPage(logged_in_page)
    chat.send("[sim:pace tps=8] [sim:long tokens=400] Count slowly")
    chat.wait_for_text_longer_than(0)
    chat.stop_button.click()
    chat.wait_for_status("stopped")
    meta = chat.last_answer().locator(".message-meta")
    expect(meta).to_contain_text(re.compile(r"\d+ out tokens · Stopped"))
    logged_in_page.reload()
    chat.wait_for_status("stopped")
    expect(meta).to_contain_text(re.compile(r"\d+ out tokens · Stopped"))


def test_send_looks_disabled_until_there_is_text(logged_in_page):
    chat = ChatPage(logged_in_page)
    expect(chat.send_button).to_be_disabled()
    empty_opacity = chat.send_button.evaluate("(el) => getComputedStyle(el).opacity")
    chat.input.fill("   ")
    expect(chat.send_button).to_be_disabled()
    chat.input.fill("Hello")
    expect(chat.send_button).to_be_enabled()
    assert float(chat.send_button.evaluate("(el) => getComputedStyle(el).opacity")) > float(
        empty_opacity
    )


def test_the_search_icon_is_drawn_for_its_size(logged_in_page, screenshot):
    icon = logged_in_page.locator(".search-icon")
    box = icon.bounding_box()
    # Drawn on a 16px grid and shown at 16px: no resampling of a bigger icon into a blur.
    assert icon.get_attribute("viewBox") == "0 0 16 16"
    assert (box["width"], box["height"]) == (16, 16)
    assert icon.locator("circle").count() == 1  # an outline, not a filled blob
    screenshot(logged_in_page, "search-icon")


def test_jump_to_latest_shows_while_scrolled_up_during_an_answer(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    jump = page.get_by_role("button", name="Jump to latest")
    chat.send("[sim:pace tps=30] [sim:long tokens=900] A long story")
    chat.wait_for_text_longer_than(1500)
    expect(jump).to_be_hidden()  # following the answer: nothing to jump to
    page.locator("#messages").evaluate("(el) => el.scrollTo(0, 0)")
    expect(jump).to_be_visible()
    jump.click()
    expect(jump).to_be_hidden()
    at_bottom = "(el) => el.scrollHeight - el.scrollTop - el.clientHeight < 80"
    assert page.locator("#messages").evaluate(at_bottom)
    expect(chat.input).to_be_focused()
    chat.stop_button.click()
    chat.wait_for_status("stopped")
    page.locator("#messages").evaluate("(el) => el.scrollTo(0, 0)")
    expect(jump).to_be_hidden()  # no answer growing: scrolling up is just reading


def test_the_last_answer_stays_in_sight_as_the_message_box_grows(logged_in_page):
    """Lines typed and files attached make the message box taller and the messages shorter:
    read to the end, the answer's last lines and its buttons must not slip under the box."""
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("[sim:long tokens=150] A long answer")
    chat.wait_for_status("complete")
    regenerate = chat.last_answer().get_by_role("button", name="Regenerate")
    expect(regenerate).to_be_in_viewport(ratio=1)
    chat.input.fill("A question\nover\nseveral\nlines")
    expect(regenerate).to_be_in_viewport(ratio=1)
    drop(page, {"name": "notes.exe", "type": "application/x-msdownload", "data": "TVqQAAMA"})
    expect(page.get_by_role("list", name="Attached files")).to_be_visible()
    expect(regenerate).to_be_in_viewport(ratio=1)


def test_the_header_model_picker_switches_the_model_at_once(logged_in_page, sim):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("First")
    chat.wait_for_status("complete")
    picker = page.get_by_label("Model", exact=True)
    models = [m["id"] for m in chat.api("/api/models/")["models"]]
    assert picker.locator("option").all_inner_texts() == models
    other = next(m for m in models if m != picker.input_value())
    picker.select_option(other)
    expect(picker).to_have_value(other)  # before any answer
    chat.send("Second")
    expect(chat.answers.nth(1).locator(".message-meta")).to_contain_text(other)
    chat.wait_for_status("complete", chat.answers.nth(1))
    assert sim.requests[-1]["model"] == other
    page.reload()
    expect(page.get_by_label("Model", exact=True)).to_have_value(other)


def test_the_two_settings_buttons_say_which_settings(logged_in_page):
    page = logged_in_page
    expect(page.get_by_role("button", name="This chat settings")).to_be_visible()
    expect(page.get_by_role("link", name="Default settings")).to_have_attribute(
        "href", "/settings/"
    )
    assert page.get_by_role("button", name="Settings", exact=True).count() == 0


def test_the_header_keeps_its_height_when_a_chat_starts_and_ends(logged_in_page):
    """The download and share buttons join the header with the first question: the messages
    under it must not move down as they appear, nor up when a new chat takes them away."""
    page = logged_in_page
    chat = ChatPage(page)
    header = page.locator(".chat-header")
    empty_height = header.bounding_box()["height"]
    chat.send("Hello")
    expect(page.get_by_role("link", name="Share in the team")).to_be_visible()
    assert header.bounding_box()["height"] == empty_height
    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_role("link", name="Share in the team")).to_be_hidden()
    assert header.bounding_box()["height"] == empty_height


def seed_team(app_server, user, *, role: str, starters=(), locked_prompt: bool = False) -> None:
    code = f"""
from django.contrib.auth import get_user_model
from chatapp.teams.models import Membership, SystemPrompt, Team, TeamPolicy
owner = get_user_model().objects.get(username={user.username!r})
team = Team.objects.create(name="Herd")
Membership.objects.filter(user=owner).delete()
Membership.objects.create(team=team, user=owner, role={role!r})
TeamPolicy.objects.create(team=team, starter_suggestions={list(starters)!r})
if {locked_prompt!r}:
    SystemPrompt.objects.create(team=team, name="House rules", content="Be kind.",
                                is_default=True, locked=True)
"""
    app_server.run_python(code)


def test_an_empty_chat_offers_the_teams_starter_suggestions(logged_in_page, app_server, user, sim):
    page = logged_in_page
    seed_team(app_server, user, role="member", starters=["Plan a trip to Cusco", "Draft a memo"])
    page.reload()
    page.wait_for_selector("html[data-socket=open]", state="attached")
    chat = ChatPage(page)
    starters = page.get_by_role("list", name="Suggestions to start with")
    expect(starters.get_by_role("button")).to_have_text(["Plan a trip to Cusco", "Draft a memo"])
    starters.get_by_role("button", name="Plan a trip to Cusco").click()
    chat.wait_for_status("complete")
    assert chat.questions.first.locator(".bubble").inner_text() == "Plan a trip to Cusco"
    expect(starters).to_be_hidden()


def test_a_starter_chosen_from_the_keyboard_leaves_focus_in_the_message_box(
    logged_in_page, app_server, user, sim
):
    page = logged_in_page
    seed_team(app_server, user, role="member", starters=["Plan a trip to Cusco"])
    page.reload()
    page.wait_for_selector("html[data-socket=open]", state="attached")
    chat = ChatPage(page)
    starter = page.get_by_role("button", name="Plan a trip to Cusco")
    starter.focus()
    page.keyboard.press("Enter")
    expect(starter).to_be_hidden()  # the empty chat's suggestions go with the first question
    expect(chat.input).to_be_focused()  # not lost with them


def test_a_starter_clicked_before_the_socket_opens_waits_in_the_message_box(
    logged_in_page, app_server, user
):
    page = logged_in_page
    seed_team(app_server, user, role="member", starters=["Plan a trip to Cusco"])
    page.route_web_socket("**/ws/**", lambda socket: socket.close())  # the server is unreachable
    page.reload()
    page.get_by_role("button", name="Plan a trip to Cusco").click()
    notice = "Not connected to the server yet; your message was not sent."
    expect(page.get_by_text(notice)).to_be_visible()
    expect(page.get_by_label("Message", exact=True)).to_have_value("Plan a trip to Cusco")
    expect(page.locator(".message-user")).to_have_count(0)


def test_a_locked_team_prompt_is_named_not_offered_away(logged_in_page, app_server, user, sim):
    page = logged_in_page
    seed_team(app_server, user, role="member", locked_prompt=True)
    page.reload()
    picker = page.get_by_label("System prompt")
    assert "No system prompt" not in picker.locator("option").all_inner_texts()
    expect(page.get_by_text("Your team's prompt “House rules” applies")).to_be_visible()
    chat = ChatPage(page)
    chat.send("Hello")
    chat.wait_for_status("complete")
    assert sim.requests[-1]["messages"][0] == {"role": "system", "content": "Be kind."}


def test_no_system_prompt_means_none_when_the_default_is_not_locked(
    logged_in_page, app_server, user, sim
):
    page = logged_in_page
    app_server.run_python(
        "from django.contrib.auth import get_user_model\n"
        "from chatapp.teams.models import SystemPrompt\n"
        "from chatapp.teams.services import ensure_personal_team\n"
        f"team = ensure_personal_team(get_user_model().objects.get(username={user.username!r}))\n"
        "SystemPrompt.objects.create(team=team, name='Tone', content='Be brief.', is_default=True)"
    )
    page.reload()
    page.get_by_label("System prompt").select_option(label="No system prompt")
    chat = ChatPage(page)
    chat.send("Hello")
    chat.wait_for_status("complete")
    assert [m["role"] for m in sim.requests[-1]["messages"]] == ["user"]


@pytest.mark.parametrize("role", ["member", "owner"])
def test_a_refused_key_is_explained_by_role_without_retry(
    logged_in_page, app_server, user, sim, role
):
    page = logged_in_page
    seed_team(app_server, user, role=role)
    page.reload()
    chat = ChatPage(page)
    chat.send("[sim:fault=401] Hello")
    chat.wait_for_status("error")

    def explained() -> None:
        notice = chat.last_answer().locator(".message-notice")
        if role == "member":
            expect(notice).to_have_text(
                "The Llama API refused the team's key; your team admins have been told."
            )
            expect(notice.get_by_role("link")).to_have_count(0)
        else:
            expect(notice).to_contain_text("LLAMA_API_KEY")
            link = notice.get_by_role("link", name="Open the provider settings")
            expect(link).to_have_attribute("href", re.compile(r"^/teams/\d+/provider/$"))
        expect(chat.last_answer().get_by_role("button", name="Retry")).to_be_hidden()

    explained()
    page.reload()  # the answer says the same; admins are told on the chat page too
    chat.wait_for_status("error")
    explained()
    warning = page.get_by_text("The Llama API refused the site's key")
    expect(warning).to_have_count(0 if role == "member" else 1)
