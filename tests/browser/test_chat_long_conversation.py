"""A long conversation: the page opens at its end, follows a streaming answer at the bottom,
lands on a search hit far above, and its text is all there for the browser's find-in-page
(what a lighter first draw, such as content-visibility or lazy Markdown, must keep)."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, json_from

pytestmark = pytest.mark.browser

TURNS = 60
AT_BOTTOM = "(el) => el.scrollHeight - el.scrollTop - el.clientHeight < 2"
# Two frames: what the page drew is laid out, and the messages that came into view with it.
SETTLED = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"


@pytest.fixture
def long_conversation(app_server, user) -> int:
    """TURNS questions and answers, the answers of uneven height (lists, code), one word
    (`needle`) in the fourth answer only."""
    code = f"""
import json
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation, Message
from chatapp.teams.actions import ensure_personal_team
owner = get_user_model().objects.get(username={user.username!r})
chat = Conversation.objects.create(team=ensure_personal_team(owner), owner=owner, title="Long")
parent = None
for n in range({TURNS}):
    items = "\\n".join(f"- point {{i}} of answer {{n}}" for i in range(3 + n % 9))
    word = " needle" if n == 3 else ""
    answer = f"Answer {{n}}{{word}}:\\n\\n{{items}}\\n\\n```python\\nprint({{n}})\\n```"
    for role, content in (("user", f"Question {{n}}"), ("assistant", answer)):
        message = Message(conversation=chat, parent_id=parent, role=role, content=content)
        message.explicit_parent = True
        message.save()
        parent = message.pk
print(json.dumps(chat.pk))
"""
    return json_from(app_server.run_python(code))


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
