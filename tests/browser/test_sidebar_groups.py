"""The sidebar's pinned group and date headings, temporary chats, and the team switcher."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, json_from
from tests.support.polling import wait_for

pytestmark = pytest.mark.browser

AGES = {"Fresh": 0, "Last night": 1, "Midweek": 3, "Earlier": 20, "Long ago": 90}


@pytest.fixture
def dated(app_server, user) -> dict[str, int]:
    """One conversation per age (days since its last activity), plus a pinned old one."""
    code = f"""
import json
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from chatapp.chat.models import Conversation
from chatapp.teams.actions import ensure_personal_team
owner = get_user_model().objects.get(username={user.username!r})
team = ensure_personal_team(owner)
ids = {{}}
for title, days in {dict(AGES, **{"Pinned plan": 200})!r}.items():
    conversation = Conversation.objects.create(team=team, owner=owner, title=title, model="m")
    when = timezone.now() - timedelta(days=days)
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=when, pinned=title == "Pinned plan"
    )
    ids[title] = conversation.pk
print(json.dumps(ids))
"""
    return json_from(app_server.run_python(code))


def group(page, heading: str):
    """The sidebar section under a heading."""
    sidebar = page.get_by_role("navigation", name="Your conversations")
    return sidebar.locator("section", has=page.get_by_role("heading", name=heading, exact=True))


def headings(page) -> list[str]:
    return page.locator(".conversation-group-heading").all_inner_texts()


def test_pinned_first_then_date_headings_and_pinning_moves_a_row(logged_in_page, dated, screenshot):
    page = logged_in_page
    page.reload()
    month = (datetime.now(UTC) - timedelta(days=AGES["Long ago"])).strftime("%B %Y")
    expect(page.locator(".conversation-group-heading")).to_have_count(6)
    assert headings(page) == [
        "Pinned",
        "Today",
        "Yesterday",
        "Previous 7 days",
        "Previous 30 days",
        month,
    ]
    for heading, title in [
        ("Pinned", "Pinned plan"),
        ("Today", "Fresh"),
        ("Yesterday", "Last night"),
        ("Previous 7 days", "Midweek"),
        ("Previous 30 days", "Earlier"),
        (month, "Long ago"),
    ]:
        expect(group(page, heading).get_by_role("link")).to_have_text([title])
    # Each group is a list of its own, named by its heading.
    expect(page.get_by_role("list", name="Yesterday")).to_have_count(1)
    screenshot(page, "sidebar-groups")

    # Pin from the row menu with the keyboard: the row moves under Pinned and keeps the focus.
    page.get_by_role("link", name="Midweek").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Pin")).to_be_focused()
    page.keyboard.press("Enter")
    expect(group(page, "Pinned").get_by_role("link")).to_have_text(["Midweek", "Pinned plan"])
    expect(page.get_by_role("link", name="Midweek")).to_be_focused()
    expect(page.get_by_role("heading", name="Previous 7 days")).to_have_count(0)
    page.reload()
    expect(group(page, "Pinned").get_by_role("link")).to_have_text(["Midweek", "Pinned plan"])

    # Unpin: back under its date.
    page.locator(".conversation-item", has=page.get_by_role("link", name="Midweek")).hover()
    page.get_by_role("button", name="Actions for “Midweek”").click()
    page.get_by_role("menuitem", name="Unpin").click()
    expect(group(page, "Previous 7 days").get_by_role("link")).to_have_text(["Midweek"])
    expect(group(page, "Pinned").get_by_role("link")).to_have_text(["Pinned plan"])


def test_a_new_conversation_lands_under_today(logged_in_page, dated):
    page = logged_in_page
    page.reload()
    expect(group(page, "Today").get_by_role("link")).to_have_text(["Fresh"])
    chat = ChatPage(page)
    chat.send("Brand new question")
    chat.wait_for_status("complete")
    expect(group(page, "Today").get_by_role("link")).to_have_text(["Brand new question", "Fresh"])
    expect(group(page, "Pinned").get_by_role("link")).to_have_text(["Pinned plan"])


def test_headings_move_on_at_midnight_in_a_tab_left_open(logged_in_page, dated):
    """A tab open overnight: at midnight today's conversations go under Yesterday."""
    page = logged_in_page
    # A minute before the end of the day "Fresh" was last active (not of the day now, which
    # may be the next one if the test runs at midnight).
    fresh = ChatPage(page).api(f"/api/conversations/{dated['Fresh']}/")["updated_at"]
    midnight_soon = page.evaluate("(when) => new Date(when).setHours(23, 59, 0, 0)", fresh)
    page.clock.install(time=datetime.fromtimestamp(midnight_soon / 1000, UTC))
    page.reload()
    expect(group(page, "Today").get_by_role("link")).to_have_text(["Fresh"])
    expect(group(page, "Yesterday").get_by_role("link")).to_have_text(["Last night"])
    page.clock.fast_forward("02:00")  # 00:01, the tab untouched meanwhile
    expect(group(page, "Yesterday").get_by_role("link")).to_have_text(["Fresh"])
    expect(group(page, "Previous 7 days").get_by_role("link")).to_have_text(
        ["Last night", "Midweek"]
    )
    expect(page.get_by_role("heading", name="Today")).to_have_count(0)


def test_temporary_chat_is_marked_kept_out_of_the_list_and_deleted_on_leaving(
    logged_in_page, screenshot
):
    page = logged_in_page
    chat = ChatPage(page)
    toggle = page.get_by_role("button", name="Temporary chat")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    notice = page.get_by_text("Not saved in your history, search or exports")
    expect(notice).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(notice).to_be_visible()
    chat.send("A passing thought")
    chat.wait_for_status("complete")
    conversation_id = chat.conversation_id()
    assert conversation_id
    stored = chat.api(f"/api/conversations/{conversation_id}/")
    assert stored["temporary"] is True
    expect(notice).to_be_visible()
    expect(toggle).to_be_hidden()  # only a new chat can become temporary
    expect(page.get_by_role("link", name="Download as Markdown")).to_be_hidden()
    assert page.url.endswith("/") and "/c/" not in page.url  # a reload starts anew
    expect(chat.sidebar_items).to_have_count(0)
    assert chat.api("/api/conversations/")["results"] == []
    screenshot(page, "temporary-chat")

    page.get_by_role("button", name="New chat").click()
    expect(notice).to_be_hidden()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    gone = page.evaluate(
        """async (id) => {
            for (let i = 0; i < 50; i++) {
                const status = (await fetch(`/api/conversations/${id}/`)).status;
                if (status === 404) return status;
                await new Promise((resolve) => setTimeout(resolve, 100));
            }
            return 200;
        }""",
        conversation_id,
    )
    assert gone == 404


class HeldAnswers:
    """The chat socket through a relay: once a question goes, the server's frames wait until
    `release()`."""

    def __init__(self, page):
        self.page = page
        self.socket = None
        self.held = None
        page.route_web_socket(re.compile(r"/ws/chat/$"), self.route)
        page.reload()
        page.wait_for_selector("html[data-socket=open]")

    def route(self, ws):
        server = ws.connect_to_server()
        self.socket = ws

        def from_page(message):
            if json.loads(message).get("type") == "chat.send":
                self.held = []
            server.send(message)

        def from_server(message):
            if self.held is None:
                ws.send(message)
            else:
                self.held.append(message)

        server.on_message(from_server)
        ws.on_message(from_page)

    def first(self, kind: str) -> dict:
        """The first frame of this type held (waiting for it: the page's calls pass them)."""

        def held():
            self.page.evaluate("0")
            frames = (json.loads(message) for message in self.held or [])
            return next((frame for frame in frames if frame["type"] == kind), None)

        return wait_for(held, kind)

    def release(self) -> None:
        held, self.held = self.held, None
        for message in held:
            self.socket.send(message)


def test_a_chat_sent_as_saved_stays_saved_whatever_the_toggle_meanwhile(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    toggle = page.get_by_role("button", name="Temporary chat")
    answers = HeldAnswers(page)
    chat.send("Keep this one")
    # Sent as a saved chat: until the server has it, the toggle can no longer change that.
    expect(toggle).to_be_disabled()
    toggle.click(force=True)
    answers.release()
    chat.wait_for_status("complete")
    conversation_id = chat.conversation_id()
    assert page.url.endswith(f"/c/{conversation_id}/")
    expect(chat.sidebar_items).to_have_count(1)
    page.get_by_role("button", name="New chat").click()
    expect(toggle).to_be_enabled()
    page.reload()
    expect(chat.sidebar_items).to_have_count(1)  # not deleted on leaving it
    assert chat.api(f"/api/conversations/{conversation_id}/")["temporary"] is False


def test_a_temporary_chat_left_before_the_server_has_it_is_deleted_unlisted(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    answers = HeldAnswers(page)
    page.get_by_role("button", name="Temporary chat").click()
    chat.send("A passing thought")
    page.get_by_role("button", name="New chat").click()  # before the server has created it
    created = answers.first("conversation.created")
    answers.release()
    status = "async (id) => (await fetch(`/api/conversations/${id}/`)).status"
    wait_for(lambda: page.evaluate(status, created["conversation"]["id"]) == 404, "its deletion")
    expect(chat.sidebar_items).to_have_count(0)
    expect(page.locator("#conversation-status")).to_have_text("No conversations yet.")


def test_team_switcher_lists_the_chosen_team_s_conversations(logged_in_page, app_server, user):
    code = f"""
import json
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation
from chatapp.teams.actions import ensure_personal_team
from chatapp.teams.models import Membership, Role, Team
owner = get_user_model().objects.get(username={user.username!r})
home = ensure_personal_team(owner)
other = Team.objects.create(name="Zeta crew")
Membership.objects.create(team=other, user=owner, role=Role.MEMBER)
Conversation.objects.create(team=home, owner=owner, title="Home notes", model="m")
Conversation.objects.create(team=other, owner=owner, title="Zeta notes", model="m")
print(json.dumps({{"home": home.pk, "other": other.pk}}))
"""
    teams = json_from(app_server.run_python(code))
    page = logged_in_page
    page.reload()
    picker = page.get_by_label("Team", exact=True)
    expect(picker).to_have_value(str(teams["home"]))
    expect(page.get_by_role("link", name="Home notes")).to_be_visible()
    expect(page.get_by_role("link", name="Zeta notes")).to_have_count(0)
    picker.select_option(label="Zeta crew")
    expect(page.get_by_role("link", name="Zeta notes")).to_be_visible()
    expect(page.get_by_role("link", name="Home notes")).to_have_count(0)
    expect(page.get_by_label("Team", exact=True)).to_have_value(str(teams["other"]))
    assert ChatPage(page).api("/api/me/")["current_team"]["id"] == teams["other"]
    # A new chat now starts in the chosen team.
    chat = ChatPage(page)
    chat.send("Zeta question")
    chat.wait_for_status("complete")
    expect(page.get_by_role("link", name="Zeta question")).to_be_visible()
    listed = chat.api(f"/api/conversations/?team={teams['other']}")["results"]
    assert [c["title"] for c in listed] == ["Zeta question", "Zeta notes"]
