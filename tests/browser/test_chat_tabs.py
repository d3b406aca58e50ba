"""One person, several tabs: what one tab does, the others show."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, json_from
from tests.browser.test_chat_attachments import drop, text_file, wait_until_attached
from tests.browser.test_sidebar import click_row_action

pytestmark = pytest.mark.browser


@pytest.fixture
def second_tab(context, logged_in_page):
    """Another tab of the same signed-in browser (it shares the session)."""
    tab = context.new_page()
    yield tab
    tab.close()


def switch_team(tab, name: str) -> None:
    """Switch the tab's team, and wait until the server has it: the picker shows the choice at
    once, the tab reloads into the team once the switch is saved."""
    with tab.expect_navigation():
        tab.get_by_label("Team", exact=True).select_option(label=name)
    tab.wait_for_selector("html[data-socket=open]")
    expect(tab.locator("#team-picker option:checked")).to_have_text(name)


def test_a_rename_in_one_tab_shows_in_the_others(logged_in_page, second_tab, page_watch):
    first = ChatPage(logged_in_page)
    first.send("Plan the offsite")
    first.wait_for_status("complete")
    conversation_id = first.conversation_id()
    second_tab.goto(f"/c/{conversation_id}/")
    second_tab.wait_for_selector("html[data-socket=open]")
    click_row_action(second_tab, "Plan the offsite", "Rename")
    title_box = second_tab.get_by_label("New title")
    title_box.fill("Offsite agenda")
    title_box.press("Enter")
    second_tab.get_by_role("link", name="Offsite agenda").wait_for()
    # The first tab's list and header follow, without a reload.
    logged_in_page.get_by_role("link", name="Offsite agenda").wait_for()
    expect(logged_in_page.locator("#conversation-title")).to_have_text("Offsite agenda")
    assert page_watch.console_errors == [] and page_watch.page_errors == []


def test_a_conversation_deleted_in_one_tab_leaves_the_others(
    logged_in_page, second_tab, page_watch
):
    first = ChatPage(logged_in_page)
    first.send("[sim:pace tps=15] [sim:long tokens=200] Draft the budget")
    # The answer's bubble shows at once; the conversation has its id once the server
    # says so (conversation.created), which moves the address to it.
    logged_in_page.wait_for_url(re.compile(r"/c/\d+/$"))
    first.answers.last.wait_for()
    conversation_id = first.conversation_id()
    first.input.fill("and the travel costs")  # a draft in the first tab
    second_tab.goto(f"/c/{conversation_id}/")
    second_tab.wait_for_selector("html[data-socket=open]")
    title = first.page.locator("#conversation-title").inner_text()
    click_row_action(second_tab, title, "Delete")
    second_tab.get_by_role("dialog").get_by_role("button", name="Delete").click()
    second_tab.wait_for_url("**/")
    # The first tab leaves the deleted conversation for a new chat, keeping its draft.
    logged_in_page.wait_for_url("**/")
    expect(first.sidebar_items).to_have_count(0)
    expect(first.answers).to_have_count(0)
    expect(first.input).to_have_value("and the travel costs")
    first.input.press("Enter")
    first.wait_for_status("complete")
    assert first.conversation_id() != conversation_id
    assert page_watch.console_errors == [] and page_watch.page_errors == []


def test_a_conversation_started_in_one_tab_is_listed_in_the_others(
    logged_in_page, second_tab, page_watch
):
    first = ChatPage(logged_in_page)
    second_tab.goto("/")
    second_tab.wait_for_selector("html[data-socket=open]")
    second = ChatPage(second_tab)
    second.send("Book the venue")
    second.wait_for_status("complete")
    logged_in_page.get_by_role("link", name="Book the venue").wait_for()
    # A temporary chat stays out of the other tabs' lists too.
    second_tab.get_by_role("button", name="New chat").click()
    second_tab.get_by_role("button", name="Temporary chat").click()
    second.send("Just between us")
    second.wait_for_status("complete")
    first.send("Order the catering")
    first.wait_for_status("complete")
    expect(first.sidebar_items).to_have_count(2)
    assert page_watch.console_errors == [] and page_watch.page_errors == []


def test_a_pin_in_one_tab_moves_the_conversation_in_the_others(
    logged_in_page, second_tab, page_watch
):
    first = ChatPage(logged_in_page)
    for question in ("Older plan", "Newer plan"):
        first.page.get_by_role("button", name="New chat").click()
        first.send(question)
        first.wait_for_status("complete")
    names = logged_in_page.locator(".conversation-name")
    expect(names).to_have_text(["Newer plan", "Older plan"])
    second_tab.goto("/")
    second_tab.wait_for_selector("html[data-socket=open]")
    click_row_action(second_tab, "Older plan", "Pin")
    expect(names).to_have_text(["Older plan", "Newer plan"])
    expect(logged_in_page.get_by_role("heading", name="Pinned")).to_be_visible()
    click_row_action(second_tab, "Older plan", "Unpin")
    expect(names).to_have_text(["Newer plan", "Older plan"])
    assert page_watch.console_errors == [] and page_watch.page_errors == []


def test_a_tab_left_on_one_team_keeps_its_new_chats_and_files_there(
    logged_in_page, second_tab, app_server, user, page_watch
):
    """Switching team in one tab leaves another tab showing the team it showed: a chat and a
    file started there go to that team, not to the session's new one."""
    app_server.run_python(f"""
from django.contrib.auth import get_user_model
from chatapp.teams.models import Membership, Team
person = get_user_model().objects.get(username={user.username!r})
Membership.objects.create(team=Team.objects.create(name="Zeta crew"), user=person)
""")
    first = ChatPage(logged_in_page)
    shown = logged_in_page.locator("#team-picker option:checked").inner_text()
    assert shown != "Zeta crew"
    second_tab.goto("/")
    second_tab.wait_for_selector("html[data-socket=open]")
    switch_team(second_tab, "Zeta crew")
    drop(logged_in_page, text_file("notes.txt"))
    wait_until_attached(logged_in_page, 1)
    first.send("Which team is this in?")
    first.wait_for_status("complete")
    conversation_id = first.conversation_id()
    # The other tab lists only its own team's conversations.
    expect(ChatPage(second_tab).sidebar_items).to_have_count(0)
    # Opened there by its address, the conversation shows in its own team, and takes files.
    second_tab.goto(f"/c/{conversation_id}/")
    second_tab.wait_for_selector("html[data-socket=open]")
    expect(second_tab.locator("#team-picker option:checked")).to_have_text(shown)
    second = ChatPage(second_tab)
    expect(second.sidebar_items).to_have_count(1)
    expect(second.answers).to_have_count(1)
    drop(second_tab, text_file("more-notes.txt"))
    wait_until_attached(second_tab, 1)
    second.send("And this one?")
    expect(second.answers).to_have_count(2)
    second.wait_for_status("complete", second.answers.last)
    placed = json_from(
        app_server.run_python(f"""
import json
from chatapp.chat.models import Conversation
from chatapp.uploads.models import Upload
chat = Conversation.objects.select_related("team").get(pk={conversation_id})
files = [u.team.name for u in Upload.objects.filter(message__conversation=chat)]
print(json.dumps({{"chat": chat.team.name, "files": files}}))
""")
    )
    assert placed == {"chat": shown, "files": [shown, shown]}
    assert page_watch.console_errors == [] and page_watch.page_errors == []


def test_a_tab_left_on_one_team_keeps_showing_that_teams_budget_and_defaults(
    logged_in_page, second_tab, app_server, user, page_watch
):
    """After each answer the composer's meters are redrawn, and a new chat's settings are
    prefilled: both for the team the page shows, not the one another tab switched to."""
    app_server.run_python(f"""
from django.contrib.auth import get_user_model
from chatapp.teams import actions
from chatapp.teams.models import Membership, Team, TeamPolicy
person = get_user_model().objects.get(username={user.username!r})
home = actions.ensure_personal_team(person)
TeamPolicy.objects.update_or_create(team=home, defaults={{"monthly_token_budget": 1_000_000}})
spent = Team.objects.create(name="Spent crew")
Membership.objects.create(team=spent, user=person)
TeamPolicy.objects.create(team=spent, monthly_token_budget=50, default_temperature=0.15)
actions.record_usage(spent, person, "Llama-3.3-70B-Instruct", 100, 0)
""")
    logged_in_page.goto("/")
    first = ChatPage(logged_in_page)
    team_meter = logged_in_page.locator('.budget-meter[data-kind="team"] .budget-text')
    expect(team_meter).to_have_text("0 of 1,000,000 tokens used.")
    second_tab.goto("/")
    second_tab.wait_for_selector("html[data-socket=open]")
    switch_team(second_tab, "Spent crew")
    first.send("How much have we used?")
    first.wait_for_status("complete")
    expect(team_meter).to_have_text(re.compile(r"^[1-9][\d,]* of 1,000,000 tokens used\.$"))
    logged_in_page.get_by_role("button", name="New chat").click()
    logged_in_page.get_by_role("button", name="This chat settings").click()
    temperature = logged_in_page.get_by_role("dialog", name="This chat").get_by_label("Temperature")
    expect(temperature).to_have_value("0.6")  # the site's default: the page's team sets none
    assert page_watch.console_errors == [] and page_watch.page_errors == []


def test_leaving_a_team_in_one_tab_stops_its_answer_in_another_and_says_why(
    logged_in_page, second_tab, app_server, user, page_watch
):
    app_server.run_python(f"""
from django.contrib.auth import get_user_model
from chatapp.teams.models import Membership, Role, Team
person = get_user_model().objects.get(username={user.username!r})
herd = Team.objects.create(name="Herd")
boss = get_user_model().objects.create(username={user.username + "-boss"!r})
Membership.objects.create(team=herd, user=boss, role=Role.OWNER)
Membership.objects.create(team=herd, user=person, role=Role.MEMBER)
""")
    first = ChatPage(logged_in_page)
    logged_in_page.reload()
    logged_in_page.wait_for_selector("html[data-socket=open]")
    with logged_in_page.expect_navigation():  # the page opens a new chat in the team chosen
        logged_in_page.get_by_label("Team", exact=True).select_option(label="Herd")
    logged_in_page.wait_for_selector("html[data-socket=open]")
    expect(logged_in_page.locator(".team-chip")).to_have_text("Herd")
    first.send("[sim:pace tps=8] [sim:long tokens=400] Count slowly")
    first.wait_for_text_longer_than(0)
    second_tab.goto("/teams/")
    second_tab.get_by_role("region", name="Your teams").get_by_role("link", name="Herd").click()
    second_tab.once("dialog", lambda dialog: dialog.accept())
    second_tab.get_by_role("button", name="Leave team").click()
    first.wait_for_status("stopped")
    why = "You are no longer a member of this team, so the answer stopped here."
    expect(first.last_answer().locator(".message-notice")).to_have_text(why)
    shown = first.answer_content()
    logged_in_page.reload()  # the stored answer says why too
    logged_in_page.wait_for_selector("html[data-socket=open]")
    first.wait_for_status("stopped")
    expect(first.last_answer().locator(".message-notice")).to_have_text(why)
    assert first.answer_content() == shown
    assert page_watch.page_errors == []


def test_a_conversation_of_a_team_left_opens_read_only_and_says_why(
    logged_in_page, app_server, user, page_watch
):
    """Opened by its address after leaving its team, a conversation is there to read: the page
    says so, and offers neither a message box, files, edits, regenerating, sharing, another
    model nor other settings (all refused, or of no use)."""
    kept_id = app_server.run_python(f"""
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation, Message
from chatapp.teams.models import Membership, Role, Team
person = get_user_model().objects.get(username={user.username!r})
crew = Team.objects.create(name="Crew")
chat = Conversation.objects.create(team=crew, owner=person, title="Retro notes", model="m")
Message.objects.create(conversation=chat, role="user", content="Notes for the retro")
Message.objects.create(conversation=chat, role="assistant", content="Went well: the demo.")
print(chat.pk)
""").strip()
    page = logged_in_page
    chat = ChatPage(page)
    page.goto(f"/c/{kept_id}/")
    page.wait_for_selector("html[data-socket=open]")
    chat.wait_for_status("complete")
    notice = page.locator("#former-team-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("no longer a member of this conversation's team")
    expect(page.get_by_text("Went well: the demo.")).to_be_visible()
    expect(chat.input).to_be_disabled()
    expect(page.locator("#attach-button")).to_be_disabled()  # no files for it either
    expect(page.locator("#share-link")).to_be_hidden()
    expect(page.get_by_role("button", name="Regenerate")).to_be_hidden()
    expect(page.get_by_role("button", name="Edit this question")).to_be_hidden()
    expect(page.locator("#export-link")).to_be_visible()  # still theirs to download
    # Its model is shown, but no answer could use another, nor other settings.
    model = page.get_by_label("Model", exact=True)
    this_chat = page.get_by_role("button", name="This chat settings")
    expect(model).to_have_value("m")
    expect(model).to_be_disabled()
    expect(this_chat).to_be_disabled()
    expect(page.locator("#attach-note")).to_be_hidden()  # "m" sees no images: no matter here
    # A new chat, in a team of theirs, is theirs to go on with, as always.
    page.get_by_role("button", name="New chat").click()
    expect(notice).to_be_hidden()
    expect(chat.input).to_be_enabled()
    expect(page.locator("#attach-button")).to_be_enabled()
    expect(model).to_be_enabled()
    expect(this_chat).to_be_enabled()
    chat.send("A new question")
    chat.wait_for_status("complete")
    expect(page.locator("#share-link")).to_be_visible()
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()
    assert page_watch.console_errors == [] and page_watch.page_errors == []


def test_a_tab_over_the_socket_cap_says_so_and_stops_reconnecting(
    context, logged_in_page, second_tab, page_watch
):
    """The server holds CHAT_MAX_SOCKETS_PER_USER (50) chat sockets of one person per process:
    a page whose socket is refused (4429) asks to close tabs instead of reconnecting."""
    second_tab.goto("/")
    second_tab.wait_for_selector("html[data-socket=open]")
    # With the two pages' sockets, 51 asked for: every place is taken (the last one refused,
    # after it opened: each of these has been counted once it opened).
    second_tab.evaluate(
        """() => Promise.all(Array.from({length: 49}, () => new Promise((resolve) => {
            new WebSocket(`ws://${location.host}/ws/chat/`).onopen = resolve;
        })))"""
    )
    third_tab = context.new_page()
    third_tab.goto("/")
    expect(third_tab.locator("#chat-notice-text")).to_have_text(
        "Too many chat tabs are open. Close some, then reload this page."
    )
    expect(third_tab.locator("html")).to_have_attribute("data-socket", "closed")
    # Places freed, the reload it asked for connects.
    second_tab.close()
    third_tab.reload()
    third_tab.wait_for_selector("html[data-socket=open]")
    expect(third_tab.locator("#chat-notice")).to_be_hidden()
    third_tab.close()
    assert page_watch.page_errors == []


def test_an_answer_whose_regenerate_was_lost_stays_when_another_tab_asks(
    logged_in_page, second_tab
):
    """The connection dropped as Regenerate was sent: once reconnected the answer is shown as
    it was, and another tab's next question adds its answer below it, taking nothing away."""
    page = logged_in_page
    first = ChatPage(page)
    first.send("Say something")
    first.wait_for_status("complete")
    page.evaluate(
        """() => {
            const socket = window.chatPage.socket;
            const send = socket.send.bind(socket);
            socket.send = (frame) => {
                if (frame.type !== "chat.regenerate") return send(frame);
                socket.send = send;
                socket.ws.close(); // lost with the connection
                return true;
            };
        }"""
    )
    first.last_answer().get_by_role("button", name="Regenerate").click()
    page.wait_for_selector("html[data-socket=reconnecting]", state="attached")
    page.wait_for_selector("html[data-socket=open]", state="attached")
    first.wait_for_status("complete")
    expect(first.last_answer().get_by_role("button", name="Regenerate")).to_be_visible()

    second_tab.goto(f"/c/{first.conversation_id()}/")
    second = ChatPage(second_tab)
    # Its socket may open before the conversation is shown: Enter does nothing until then.
    expect(second.answers).to_have_count(1)
    second.send("And another thing")
    expect(second.answers).to_have_count(2)
    second.wait_for_status("complete")

    expect(first.questions).to_have_count(2)
    expect(first.answers).to_have_count(2)
    first.wait_for_status("complete", first.answers.nth(1))


def test_a_button_taken_away_by_another_tab_hands_focus_to_the_message_box(
    logged_in_page, second_tab
):
    first = ChatPage(logged_in_page)
    first.send("Hello")
    first.wait_for_status("complete")
    second_tab.goto(f"/c/{first.conversation_id()}/")
    second = ChatPage(second_tab)
    expect(second.answers).to_have_count(1)  # shown: Enter does nothing before
    regenerate = first.last_answer().get_by_role("button", name="Regenerate")
    regenerate.focus()
    second.send("[sim:pace tps=8] [sim:long tokens=200] And more")
    expect(first.questions).to_have_count(2)
    expect(regenerate).to_be_hidden()  # only the last answer has one
    expect(first.input).to_be_focused()  # not lost to the page
    second.stop_button.click()
    first.wait_for_status("stopped")

    edit = first.questions.last.get_by_role("button", name="Edit this question")
    edit.focus()
    second.last_answer().get_by_role("button", name="Regenerate").click()
    expect(edit).to_be_disabled()  # while the new answer streams
    expect(first.input).to_be_focused()
