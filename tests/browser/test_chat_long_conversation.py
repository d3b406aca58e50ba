"""A long conversation: the page opens at its end, follows a streaming answer at the bottom,
lands on a search hit far above, and its text is all there for the browser's find-in-page
(what a lighter first draw, such as content-visibility or lazy Markdown, must keep). It draws
the last messages first and puts the earlier ones above them afterwards, all at once."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, json_from

pytestmark = pytest.mark.browser

TURNS = 60
AT_BOTTOM = "(el) => el.scrollHeight - el.scrollTop - el.clientHeight < 2"
# Two frames: what the page drew is laid out, and the messages that came into view with it.
SETTLED = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"
# Each time the number of messages in the pane changes (seen after the task that drew them):
# their ids in order, the pane's distance from its bottom, and the landed message's place.
RECORD_DRAWS = """
window.__draws = [];
new MutationObserver(() => {
  const pane = document.getElementById("messages");
  const shown = pane ? [...pane.querySelectorAll(".message")] : [];
  if (shown.length === (window.__draws.at(-1)?.ids.length ?? 0)) return;
  const landed = pane.querySelector(".message.is-landed");
  window.__draws.push({
    ids: shown.map((el) => el.dataset.messageId),
    gap: pane.scrollHeight - pane.scrollTop - pane.clientHeight,
    landedTop: landed ? landed.getBoundingClientRect().top : null,
  });
  if (window.__afterFirstDraw && window.__draws.length === 1) window.__afterFirstDraw();
}).observe(document, { subtree: true, childList: true });
"""
SHOWN_IDS = (
    "() => [...document.querySelectorAll('#messages .message')].map((el) => el.dataset.messageId)"
)


def seed(app_server, user, turns: int, another_last_answer: bool = False) -> dict:
    """`turns` questions and answers, the answers of uneven height (lists, code), one word
    (`needle`) in the fourth answer only; with another_last_answer, the last question answered
    twice (the first answer shown). Returns the conversation's id and the shown branch's ids."""
    code = f"""
import json
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation, Message
from chatapp.teams.actions import ensure_personal_team
owner = get_user_model().objects.get(username={user.username!r})
chat = Conversation.objects.create(team=ensure_personal_team(owner), owner=owner, title="Long")
parent = None
ids = []
def add(parent, role, content):
    message = Message(conversation=chat, parent_id=parent, role=role, content=content)
    message.explicit_parent = True
    message.save()
    return message.pk
for n in range({turns}):
    items = "\\n".join(f"- point {{i}} of answer {{n}}" for i in range(3 + n % 9))
    word = " needle" if n == 3 else ""
    answer = f"Answer {{n}}{{word}}:\\n\\n{{items}}\\n\\n```python\\nprint({{n}})\\n```"
    for role, content in (("user", f"Question {{n}}"), ("assistant", answer)):
        parent = add(parent, role, content)
        ids.append(parent)
other = None
if {another_last_answer!r}:
    other = add(ids[-2], "assistant", "Another last answer")
    chat.active_leaf_id = ids[-1]
    chat.save(update_fields=["active_leaf"])
print(json.dumps({{"conversation": chat.pk, "ids": [str(i) for i in ids], "other": other}}))
"""
    return json_from(app_server.run_python(code))


@pytest.fixture
def long_conversation(app_server, user) -> int:
    return seed(app_server, user, TURNS)["conversation"]


def test_a_long_conversation_opens_at_its_end(logged_in_page, long_conversation):
    page = logged_in_page
    chat = ChatPage(page)
    page.goto(f"/c/{long_conversation}/")
    expect(chat.answers).to_have_count(TURNS)
    page.evaluate(SETTLED)
    expect(chat.last_answer()).to_be_in_viewport()
    assert page.locator("#messages").evaluate(AT_BOTTOM)


def test_a_long_conversation_follows_a_streaming_answer(logged_in_page, long_conversation):
    page = logged_in_page
    chat = ChatPage(page)
    page.goto(f"/c/{long_conversation}/")
    expect(chat.answers).to_have_count(TURNS)
    chat.send("[sim:pace tps=40] [sim:long tokens=500] A long story")
    chat.wait_for_text_longer_than(1200)
    page.evaluate(SETTLED)
    assert page.locator("#messages").evaluate(AT_BOTTOM)
    chat.wait_for_status("complete")
    page.evaluate(SETTLED)
    assert page.locator("#messages").evaluate(AT_BOTTOM)
    expect(page.get_by_role("button", name="Jump to latest")).to_be_hidden()


def test_a_search_hit_far_up_a_long_conversation_is_shown(logged_in_page, long_conversation):
    page = logged_in_page
    page.goto("/")
    page.get_by_label("Search conversations").fill("needle")
    result = page.locator(".conversation-item").first
    expect(result.locator(".conversation-snippet")).to_contain_text("needle")
    result.locator(".conversation-link").click()
    landed = page.locator(".message.is-landed")
    expect(landed).to_contain_text("Answer 3 needle")
    page.evaluate(SETTLED)
    expect(landed).to_be_in_viewport()


def test_find_in_page_reaches_text_far_up_a_long_conversation(logged_in_page, long_conversation):
    """window.find stands in for Ctrl+F (the browser's own bar is out of a page's reach): it
    finds text only where the browser has laid it out."""
    page = logged_in_page
    chat = ChatPage(page)
    page.goto(f"/c/{long_conversation}/")
    expect(chat.answers).to_have_count(TURNS)
    page.evaluate(SETTLED)
    assert page.evaluate("() => window.find('needle', false, false, true)")
    found = page.evaluate(
        "() => window.getSelection().anchorNode.parentElement.closest('.message').textContent"
    )
    assert "Answer 3 needle" in found


def test_a_long_conversation_draws_its_end_first_then_the_rest_above(
    app_server, user, logged_in_page
):
    """The first draw holds only the last messages; the earlier ones come above them in one
    later draw, in order and each once, while the pane stays at its end."""
    page = logged_in_page
    conversation = seed(app_server, user, TURNS)
    page.add_init_script(RECORD_DRAWS)
    page.goto(f"/c/{conversation['conversation']}/")
    expect(ChatPage(page).answers).to_have_count(TURNS)
    page.evaluate(SETTLED)
    ids = conversation["ids"]
    assert page.evaluate(SHOWN_IDS) == ids
    draws = page.evaluate("window.__draws")
    assert len(draws) == 2  # only the end, then all of them
    assert 0 < len(draws[0]["ids"]) < len(ids)
    assert draws[0]["ids"] == ids[-len(draws[0]["ids"]) :]
    assert draws[1]["ids"] == ids
    assert all(draw["gap"] < 2 for draw in draws)
    assert page.locator("#messages").evaluate(AT_BOTTOM)


def test_a_search_hit_far_up_stays_in_place_while_the_rest_is_drawn(
    app_server, user, logged_in_page
):
    page = logged_in_page
    conversation = seed(app_server, user, TURNS)
    page.add_init_script(RECORD_DRAWS)
    page.goto("/")
    page.get_by_label("Search conversations").fill("needle")
    result = page.locator(".conversation-item").first
    expect(result.locator(".conversation-snippet")).to_contain_text("needle")
    result.locator(".conversation-link").click()
    landed = page.locator(".message.is-landed")
    expect(landed).to_contain_text("Answer 3 needle")
    expect(ChatPage(page).answers).to_have_count(TURNS)
    page.evaluate(SETTLED)
    expect(landed).to_be_in_viewport()
    assert page.evaluate(SHOWN_IDS) == conversation["ids"]
    tops = [d["landedTop"] for d in page.evaluate("window.__draws") if d["landedTop"] is not None]
    assert tops
    assert max(tops) - min(tops) < 2
    assert abs(landed.evaluate("(el) => el.getBoundingClientRect().top") - tops[0]) < 2


def test_a_version_switched_while_earlier_messages_are_drawn_is_drawn_once(
    app_server, user, logged_in_page
):
    """The last answer's other version is asked for as soon as the end is drawn: the
    conversation.state that answers comes while the earlier messages are still to be drawn."""
    page = logged_in_page
    conversation = seed(app_server, user, 300, another_last_answer=True)
    page.add_init_script(RECORD_DRAWS)
    last = conversation["ids"][-1]
    next_version = f'.message-assistant[data-message-id="{last}"] [aria-label="Next version"]'
    # The click waits for the socket when the end is drawn first (a busy machine): before it
    # opens, the page only says it is not connected yet.
    page.add_init_script(
        f"""window.__afterFirstDraw = () => {{
  const click = () => document.querySelector('{next_version}').click();
  const root = document.documentElement;
  if (root.dataset.socket === "open") return click();
  new MutationObserver((_, watch) => {{
    if (root.dataset.socket !== "open") return;
    watch.disconnect();
    click();
  }}).observe(root, {{ attributes: true, attributeFilter: ["data-socket"] }});
}};"""
    )
    page.goto(f"/c/{conversation['conversation']}/")
    chat = ChatPage(page)
    expect(chat.last_answer()).to_have_text(re.compile("Another last answer"))
    expect(chat.answers).to_have_count(300)
    page.evaluate(SETTLED)
    assert page.evaluate(SHOWN_IDS) == [*conversation["ids"][:-1], str(conversation["other"])]
    assert len(page.evaluate("window.__draws")[0]["ids"]) < 600
    assert page.locator("#messages").evaluate(AT_BOTTOM)
