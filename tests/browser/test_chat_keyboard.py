"""The chat page from the keyboard: Stop and Escape, shortcuts, one Tab stop per conversation."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, json_from

pytestmark = pytest.mark.browser

SLOW = "[sim:pace tps=8] [sim:long tokens=400]"


def focused_id(page) -> str:
    return page.evaluate("document.activeElement.id")


def test_enter_on_the_focused_stop_button_keeps_focus_in_the_composer(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send(f"{SLOW} Count slowly")
    chat.wait_for_text_longer_than(0)
    chat.stop_button.focus()
    page.keyboard.press("Enter")
    chat.wait_for_status("stopped")
    expect(chat.stop_button).to_be_hidden()
    expect(chat.input).to_be_focused()


def test_escape_stops_the_answer(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send(f"{SLOW} Count slowly")
    chat.wait_for_text_longer_than(0)
    page.keyboard.press("Escape")
    chat.wait_for_status("stopped")
    expect(chat.input).to_be_focused()


def test_regenerate_from_the_keyboard_leaves_focus_in_the_composer(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("Hello")
    chat.wait_for_status("complete")
    regenerate = chat.last_answer().get_by_role("button", name="Regenerate")
    regenerate.focus()
    page.keyboard.press("Enter")
    expect(regenerate).to_be_hidden()  # gone while the new answer streams
    expect(chat.input).to_be_focused()
    chat.wait_for_status("complete")
    expect(chat.input).to_be_focused()


def test_shortcuts_are_listed_in_a_dialog_and_work(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("Hello")
    chat.wait_for_status("complete")
    page.locator("#messages").focus()
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    for action in ["New chat", "Focus the message box", "Show or hide the conversations"]:
        expect(dialog.get_by_text(action)).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert chat.questions.count() == 1  # Escape closed the dialog, nothing else

    chat.input.focus()
    page.keyboard.type("?")  # typed in the box, it is just a character
    expect(dialog).to_be_hidden()
    assert chat.input.input_value() == "?"

    page.locator("#messages").focus()
    page.keyboard.press("Shift+Escape")
    expect(chat.input).to_be_focused()

    sidebar = page.locator("#sidebar")
    page.keyboard.press("Control+Shift+S")
    expect(sidebar).to_be_hidden()
    page.keyboard.press("Control+Shift+S")
    expect(sidebar).to_be_visible()

    page.keyboard.press("Control+Shift+O")
    expect(chat.questions).to_have_count(0)
    page.wait_for_url("**/")
    expect(chat.input).to_be_focused()


def test_tab_stays_in_the_open_drawer_at_phone_width(phone_page):
    page = phone_page
    opener = page.get_by_role("button", name="Open conversations")
    opener.click()
    expect(page.get_by_role("button", name="New chat")).to_be_focused()
    where = "(() => { const el = document.activeElement;"
    where += " return el === document.body ? 'page' : el.closest('#sidebar') ? 'drawer' : el.id;"
    where += " })()"
    stops = set()
    for _ in range(30):  # more than the drawer's controls: round and round it
        page.keyboard.press("Tab")
        stops.add(page.evaluate(where))
    assert stops <= {"drawer", "page"}, stops  # "page": past the last, before the first
    expect(page.locator("#main")).to_have_attribute("inert", "")
    page.keyboard.press("Escape")
    expect(opener).to_be_focused()
    expect(page.locator("#main")).not_to_have_attribute("inert", "")
    page.keyboard.press("Tab")
    assert page.evaluate(where) not in ("drawer", "page")


@pytest.fixture
def three_conversations(app_server, user, logged_in_page) -> dict[str, int]:
    code = f"""
import json
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation
from chatapp.teams.services import ensure_personal_team
owner = get_user_model().objects.get(username={user.username!r})
team = ensure_personal_team(owner)
ids = {{t: Conversation.objects.create(team=team, owner=owner, title=t, model="m").pk
        for t in ["Third", "Second", "First"]}}
print(json.dumps(ids))
"""
    ids = json_from(app_server.run_python(code))
    logged_in_page.reload()
    logged_in_page.get_by_role("link", name="First").wait_for()
    return ids


def test_each_conversation_is_one_tab_stop_after_the_header(logged_in_page, three_conversations):
    page = logged_in_page
    stops = []
    page.locator(".skip-link").focus()  # the first stop on the page
    for _ in range(20):
        page.keyboard.press("Tab")
        stops.append(
            page.evaluate(
                "(() => { const el = document.activeElement;"
                " return el.id || el.getAttribute('aria-label') || el.textContent.trim(); })()"
            )
        )
    assert stops.index("model-picker") < stops.index("First")
    assert stops.index("composer-input") < stops.index("First")
    rows = [stop for stop in stops if stop in ("First", "Second", "Third")]
    assert rows[:3] == ["First", "Second", "Third"]  # one stop each, no buttons between
    first, third = stops.index("First"), stops.index("Third")
    assert third - first == 2

    # The row's actions live in its menu: arrow key in, Escape back to the row.
    page.get_by_role("link", name="Second").focus()
    page.keyboard.press("ArrowRight")
    menu = page.get_by_role("menu", name="Actions for “Second”")
    expect(menu).to_be_visible()
    expect(menu.get_by_role("menuitem", name="Rename")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(menu.get_by_role("menuitem", name="Pin")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(menu.get_by_role("menuitem", name="Delete")).to_be_focused()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(page.get_by_role("link", name="Second")).to_be_focused()


def test_dismissing_the_notice_from_the_keyboard_leaves_focus_in_the_composer(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    empty = {"name": "empty.txt", "mimeType": "text/plain", "buffer": b""}
    page.set_input_files("#attach-input", files=[empty])
    notice = page.locator("#chat-notice")
    expect(notice).to_contain_text("empty.txt is empty")
    notice.get_by_role("button", name="Dismiss").focus()
    page.keyboard.press("Enter")
    expect(notice).to_be_hidden()
    expect(chat.input).to_be_focused()  # not lost to the top of the page with the notice


def test_home_and_end_reach_the_first_and_last_items_of_a_row_menu(
    logged_in_page, three_conversations
):
    page = logged_in_page
    page.get_by_role("link", name="Second").focus()
    page.keyboard.press("ArrowRight")
    menu = page.get_by_role("menu", name="Actions for “Second”")
    page.keyboard.press("End")
    expect(menu.get_by_role("menuitem", name="Delete")).to_be_focused()
    page.keyboard.press("Home")
    expect(menu.get_by_role("menuitem", name="Rename")).to_be_focused()
