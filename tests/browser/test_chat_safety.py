"""A blocked answer on the chat page: the text is replaced by a notice, and stays withheld."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, json_from

pytestmark = pytest.mark.browser

BLOCKED = "[sim:flag_answer categories=S10 at=20] [sim:long tokens=300] [sim:pace tps=30] Go on"


def screen_answers(app_server, username: str) -> None:
    app_server.run_python(
        "from django.contrib.auth import get_user_model\n"
        "from chatapp.teams.actions import ensure_personal_team\n"
        "from chatapp.teams.models import TeamPolicy\n"
        f"team = ensure_personal_team(get_user_model().objects.get(username={username!r}))\n"
        "TeamPolicy.objects.update_or_create(team=team, defaults={'safety_output': 'block'})\n"
    )


def test_a_blocked_answer_is_replaced_by_a_notice(
    app_server, user, logged_in_page, page_watch, screenshot
):
    screen_answers(app_server, user.username)
    chat = ChatPage(logged_in_page)
    chat.send(BLOCKED)
    chat.wait_for_text_longer_than(0)  # it streamed before the verdict arrived
    chat.wait_for_status("blocked")

    answer = chat.last_answer()
    notice = answer.locator(".message-notice")
    expect(notice).to_contain_text("blocked by your team's safety policy")
    expect(notice).to_contain_text("S10 Hate")
    assert chat.answer_content() == ""
    expect(answer.locator(".message-meta")).to_contain_text("Blocked")
    screenshot(logged_in_page, "safety-blocked-answer")

    logged_in_page.reload()
    chat.wait_for_status("blocked")
    expect(chat.last_answer().locator(".message-notice")).to_contain_text("S10 Hate")
    assert chat.answer_content() == ""
    assert page_watch.page_errors == [] and page_watch.console_errors == []


def test_the_question_says_what_was_redacted(app_server, user, logged_in_page, screenshot):
    app_server.run_python(
        "from django.contrib.auth import get_user_model\n"
        "from chatapp.teams.actions import ensure_personal_team\n"
        "from chatapp.teams.models import TeamPolicy\n"
        f"team = ensure_personal_team(get_user_model().objects.get(username={user.username!r}))\n"
        "TeamPolicy.objects.update_or_create(team=team, defaults={'data_email': 'redact'})\n"
    )
    chat = ChatPage(logged_in_page)
    chat.send("Write to ann@example.com please")
    chat.wait_for_status("complete")

    note = chat.questions.last.locator(".message-redactions")
    expect(note).to_have_text(
        "Sent to the model with [EMAIL_1] in place of the e-mail address (your team's data policy)."
    )
    expect(chat.questions.last.locator(".bubble")).to_have_text("Write to ann@example.com please")
    assert "ann@example.com" not in chat.answer_content()  # the model only saw the placeholder
    screenshot(logged_in_page, "safety-redacted-question")


def seeded_answer(app_server, username: str, safety: dict, status: str = "complete") -> int:
    """A conversation whose one answer was screened as `safety` says; returns its id."""
    return json_from(
        app_server.run_python(
            "from django.contrib.auth import get_user_model\n"
            "from chatapp.chat.models import Conversation, Message\n"
            "from chatapp.teams.actions import ensure_personal_team\n"
            f"owner = get_user_model().objects.get(username={username!r})\n"
            "team = ensure_personal_team(owner)\n"
            "chat = Conversation.objects.create(team=team, owner=owner, model='m')\n"
            "Message.objects.create(conversation=chat, role='user', content='Tell me')\n"
            "Message.objects.create(conversation=chat, role='assistant', content='Told',"
            f" status={status!r}, safety={safety!r})\n"
            "print(chat.pk)\n"
        )
    )


def test_a_flagged_answer_says_what_llama_guard_could_not_check(app_server, user, logged_in_page):
    safety = {"flagged": True, "categories": ["S10"], "stages": ["input"], "unscreened": ["output"]}
    conversation = seeded_answer(app_server, user.username, safety)
    logged_in_page.goto(f"/c/{conversation}/")

    notice = ChatPage(logged_in_page).last_answer().locator(".message-notice")
    expect(notice).to_contain_text("Llama Guard flagged this question as S10 Hate")
    expect(notice).to_contain_text("Llama Guard could not be reached to screen the answer in full")


def test_an_answer_withheld_unscreened_does_not_say_llama_guard_flagged_it(
    app_server, user, logged_in_page
):
    # The question was flagged (under flag); the answer could not be screened, failing closed.
    safety = {"flagged": True, "categories": ["S10"], "stages": ["input"], "unscreened": ["output"]}
    conversation = seeded_answer(app_server, user.username, safety, status="blocked")
    logged_in_page.goto(f"/c/{conversation}/")

    notice = ChatPage(logged_in_page).last_answer().locator(".message-notice")
    expect(notice).to_contain_text("This answer is withheld")
    expect(notice).to_contain_text("Llama Guard could not be reached")
    expect(notice).to_contain_text("Llama Guard flagged the question as S10 Hate")
    expect(notice).not_to_contain_text("flagged it as")
