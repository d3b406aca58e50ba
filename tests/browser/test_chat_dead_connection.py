"""A connection that dies without a close (a laptop asleep, a Wi-Fi change, a NAT dropping an
idle connection): the browser goes on calling it open. The page notices when it wakes or when
a frame it sent gets no answer, reconnects, and catches up as after any reconnect.

The page's clock is Playwright's: the reply bound passes by `clock.run_for`, not by waiting."""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, json_from
from tests.browser.conftest import WAIT_MS
from tests.support.polling import wait_for

pytestmark = pytest.mark.browser

REPLY_MS = 10_000  # static/js/chat/socket.js


class DeadableRelay:
    """The chat socket through a relay; `die()` makes the open connection swallow every frame,
    both ways, without either side hearing a close. Later connections get through."""

    def __init__(self, page):
        self.page = page
        self.connections = 0
        self.dead = None  # the number of the connection that died
        self.from_page: list[tuple[int, dict]] = []
        self.from_server: list[tuple[int, dict]] = []
        page.route_web_socket(re.compile(r"/ws/chat/$"), self.route)

    def route(self, ws):
        self.connections += 1
        number = self.connections
        server = ws.connect_to_server()

        def from_page(message):
            self.from_page.append((number, json.loads(message)))
            if number != self.dead:
                server.send(message)

        def from_server(message):
            self.from_server.append((number, json.loads(message)))
            if number != self.dead:
                ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    def die(self) -> None:
        self.dead = self.connections

    def sent(self, kind: str, connection: int) -> list[dict]:
        return [f for n, f in self.from_page if n == connection and f["type"] == kind]

    def received(self, kind: str) -> list[dict]:
        return [f for _, f in self.from_server if f["type"] == kind]

    def wait_until(self, condition, what: str):
        """Route handlers run only while Playwright has the page's events: hand them over."""
        return wait_for(lambda: condition() or self.page.wait_for_timeout(50), what, WAIT_MS / 1000)


def conversation_page_through_relay(page, chat: ChatPage) -> DeadableRelay:
    """A conversation with one answer, reloaded with the fake clock and the relay."""
    chat.send("First question")
    chat.wait_for_status("complete")
    page.clock.install()
    relay = DeadableRelay(page)
    page.reload()
    page.wait_for_selector("html[data-socket=open]")
    relay.wait_until(lambda: relay.received("conversation.state"), "the conversation's state")
    expect(chat.answers).to_have_count(1)
    return relay


def wake(page, context, how: str) -> None:
    if how == "online":
        context.set_offline(True)
        context.set_offline(False)
    else:  # the tab shown again (headless Chromium never hides it: the event is what counts)
        page.evaluate(
            """() => {
                for (const state of ["hidden", "visible"]) {
                    Object.defineProperty(document, "visibilityState", {
                        value: state, configurable: true,
                    });
                    document.dispatchEvent(new Event("visibilitychange"));
                }
            }"""
        )


@pytest.mark.parametrize("how", ["online", "visible"])
def test_waking_on_a_dead_connection_reconnects_and_shows_what_was_missed(
    logged_in_page, context, how
):
    page = logged_in_page
    chat = ChatPage(page)
    relay = conversation_page_through_relay(page, chat)
    conversation_id = chat.conversation_id()

    # A live connection answers the check and stays.
    states = len(relay.received("conversation.state"))
    wake(page, context, how)
    relay.wait_until(lambda: len(relay.received("conversation.state")) > states, "an answer")
    page.clock.run_for(REPLY_MS)
    assert relay.connections == 1

    # It dies; another tab asks a question meanwhile, and its answer never reaches this one.
    relay.die()
    other = context.new_page()
    other.goto(f"/c/{conversation_id}/")
    other_chat = ChatPage(other)
    expect(other_chat.answers).to_have_count(1)
    other_chat.send("Second question")
    expect(other_chat.answers).to_have_count(2)
    other_chat.wait_for_status("complete", other_chat.answers.nth(1))
    # The relay records frames as Playwright hands it the page's events: wait for this one.
    relay.wait_until(lambda: relay.received("message.done"), "the answer, swallowed")
    expect(chat.questions).to_have_count(1)
    expect(page.locator("html[data-socket=open]")).to_have_count(1)  # as far as it knows

    wake(page, context, how)
    relay.wait_until(lambda: relay.sent("chat.subscribe", relay.dead), "the check")
    page.clock.run_for(REPLY_MS)
    relay.wait_until(lambda: relay.connections == 2, "a new connection")
    expect(chat.questions).to_have_count(2)
    expect(chat.answers).to_have_count(2)
    chat.wait_for_status("complete", chat.answers.nth(1))
    stored = chat.api(f"/api/conversations/{conversation_id}/")["messages"][-1]
    assert chat.answer_content() == stored["content"]
    assert relay.connections == 2
    other.close()


def test_a_question_sent_on_a_dead_connection_comes_back_to_be_sent_once(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    relay = conversation_page_through_relay(page, chat)
    relay.die()
    chat.send("Are you there?")
    relay.wait_until(lambda: relay.sent("chat.send", relay.dead), "the question leaving")
    expect(chat.questions).to_have_count(2)  # shown as sending
    page.clock.run_for(REPLY_MS)
    # Never answered: the page reconnects, sees the server never had it, and gives it back.
    expect(chat.input).to_have_value("Are you there?")
    expect(chat.questions).to_have_count(1)
    chat.input.press("Enter")
    expect(chat.answers).to_have_count(2)
    chat.wait_for_status("complete", chat.answers.nth(1))
    messages = chat.api(f"/api/conversations/{chat.conversation_id()}/")["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "First question",
        "Are you there?",
    ]
    assert relay.connections == 2


def test_after_a_reconnect_the_list_shows_what_other_tabs_did_meanwhile(
    logged_in_page, app_server, user
):
    page = logged_in_page
    chat = ChatPage(page)
    code = f"""
import json
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation
from chatapp.teams.actions import ensure_personal_team
owner = get_user_model().objects.get(username={user.username!r})
team = ensure_personal_team(owner)
titles = [f"Filler {{n:02d}}" for n in range(25)] + ["Gamma ideas", "Beta notes"]
ids = {{t: Conversation.objects.create(team=team, owner=owner, title=t).pk for t in titles}}
print(json.dumps(ids))
"""
    ids = json_from(app_server.run_python(code))
    relay = conversation_page_through_relay(page, chat)
    scroller = page.locator(".conversation-scroll")
    scroller.evaluate("(el) => el.scrollTo(0, el.scrollHeight)")  # the second page loads
    page.get_by_role("link", name="Filler 00").wait_for()
    in_view = page.get_by_role("link", name="Filler 08")
    in_view.scroll_into_view_if_needed()
    expect(in_view).to_be_in_viewport()
    assert scroller.evaluate("(el) => el.scrollTop") > 0

    # Another tab renames, deletes and starts conversations; none of it reaches this one.
    relay.die()
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    headers = {"X-CSRFToken": csrf}
    url = "/api/conversations/{}/".format
    page.request.patch(url(ids["Beta notes"]), data={"title": "Beta renamed"}, headers=headers)
    page.request.delete(url(ids["Gamma ideas"]), headers=headers)
    app_server.run_python(f"""
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation
from chatapp.teams.actions import ensure_personal_team
owner = get_user_model().objects.get(username={user.username!r})
Conversation.objects.create(team=ensure_personal_team(owner), owner=owner, title="Made elsewhere")
""")
    relay.wait_until(lambda: relay.received("conversation.deleted"), "the deletion, swallowed")
    expect(chat.sidebar_items.filter(has_text="Gamma ideas")).to_have_count(1)

    wake(page, context=None, how="visible")
    relay.wait_until(lambda: relay.sent("chat.subscribe", relay.dead), "the check")
    page.clock.run_for(REPLY_MS)
    relay.wait_until(lambda: relay.connections == 2, "a new connection")
    expect(page.get_by_role("link", name="Made elsewhere")).to_have_count(1)
    expect(page.get_by_role("link", name="Beta renamed")).to_have_count(1)
    expect(page.get_by_role("link", name="Beta notes")).to_have_count(0)
    expect(page.get_by_role("link", name="Gamma ideas")).to_have_count(0)
    # The list was brought up to date where it stood, not drawn again from its top.
    expect(in_view).to_be_in_viewport()
    assert scroller.evaluate("(el) => el.scrollTop") > 0
    assert len(page.locator(".conversation-name").all_inner_texts()) > 20  # page 2 still there


def test_a_conversation_unpinned_meanwhile_stays_in_the_list_after_a_reconnect(
    logged_in_page, app_server, user
):
    """Unpinned in another tab, the oldest conversation falls past the first page: the list
    asked again after a reconnect lacks it, yet it is there, where an unpinned one goes."""
    page = logged_in_page
    chat = ChatPage(page)
    code = f"""
import json
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation
from chatapp.teams.actions import ensure_personal_team
owner = get_user_model().objects.get(username={user.username!r})
team = ensure_personal_team(owner)
old = Conversation.objects.create(team=team, owner=owner, title="Pinned long ago", pinned=True)
for n in range(25):
    Conversation.objects.create(team=team, owner=owner, title=f"Filler {{n:02d}}")
print(json.dumps(old.pk))
"""
    pinned_id = json_from(app_server.run_python(code))
    relay = conversation_page_through_relay(page, chat)
    scroller = page.locator(".conversation-scroll")
    scroller.evaluate("(el) => el.scrollTo(0, el.scrollHeight)")  # the second page loads
    page.get_by_role("link", name="Filler 00").wait_for()

    relay.die()
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    page.request.patch(
        f"/api/conversations/{pinned_id}/", data={"pinned": False}, headers={"X-CSRFToken": csrf}
    )
    relay.wait_until(lambda: relay.received("conversation.pinned"), "the unpinning, swallowed")

    wake(page, context=None, how="visible")
    relay.wait_until(lambda: relay.sent("chat.subscribe", relay.dead), "the check")
    page.clock.run_for(REPLY_MS)
    relay.wait_until(lambda: relay.connections == 2, "a new connection")
    expect(page.locator("#conversation-group-pinned")).to_have_count(0)  # the list caught up
    names = page.locator(".conversation-name")
    assert names.all_inner_texts()[-1] == "Pinned long ago"
    assert len(names.all_inner_texts()) == 27


@pytest.mark.parametrize("how", ["online", "visible"])
def test_waking_on_a_new_chat_checks_the_connection_too(logged_in_page, context, how):
    page = logged_in_page  # a new chat: no conversation to subscribe to
    chat = ChatPage(page)
    page.clock.install()
    relay = DeadableRelay(page)
    page.reload()
    page.wait_for_selector("html[data-socket=open]")

    # A live connection answers the check (a refusal that changes nothing), said nowhere.
    wake(page, context, how)
    relay.wait_until(lambda: relay.received("error"), "the check's answer")
    page.clock.run_for(REPLY_MS)
    assert relay.connections == 1
    expect(page.locator("#chat-notice")).to_be_hidden()

    relay.die()
    wake(page, context, how)
    relay.wait_until(lambda: len(relay.sent("chat.subscribe", relay.dead)) == 2, "the check")
    page.clock.run_for(REPLY_MS)
    relay.wait_until(lambda: relay.connections == 2, "a new connection")
    expect(page.locator("html[data-socket=open]")).to_have_count(1)
    chat.send("Still there?")
    chat.wait_for_status("complete")
    expect(page.locator("#chat-notice")).to_be_hidden()


def test_the_open_conversation_deleted_while_the_connection_was_dead_leaves_the_page(
    logged_in_page,
):
    """Its deletion was never heard: the reconnect's subscribe is refused, and the page leaves
    the conversation as when the deletion arrives live (for a new chat, keeping the draft)."""
    page = logged_in_page
    chat = ChatPage(page)
    relay = conversation_page_through_relay(page, chat)
    conversation_id = chat.conversation_id()
    chat.input.fill("and one more thing")
    relay.die()
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    page.request.delete(f"/api/conversations/{conversation_id}/", headers={"X-CSRFToken": csrf})
    relay.wait_until(lambda: relay.received("conversation.deleted"), "the deletion, swallowed")
    expect(chat.answers).to_have_count(1)

    wake(page, context=None, how="visible")
    relay.wait_until(lambda: relay.sent("chat.subscribe", relay.dead), "the check")
    page.clock.run_for(REPLY_MS)
    relay.wait_until(lambda: relay.connections == 2, "a new connection")
    page.wait_for_url(re.compile(r"://[^/]+/$"))
    expect(chat.answers).to_have_count(0)
    expect(chat.sidebar_items).to_have_count(0)
    expect(chat.input).to_have_value("and one more thing")
    expect(page.locator("#chat-notice")).to_be_hidden()
    chat.input.press("Enter")
    chat.wait_for_status("complete")
    assert chat.conversation_id() != conversation_id
