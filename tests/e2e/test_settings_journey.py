"""The settings page decides what reaches the model: checked at the simulator, not the page."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
from tests.browser.conftest import MODEL
from tests.e2e.journeys import expect_socket_open

pytestmark = pytest.mark.browser

CHOSEN = {"model": "Llama-3.3-8B-Instruct", "temperature": 0.3, "max_tokens": 700, "top_p": 0.75}
SITE = {"model": MODEL, "temperature": 0.6, "max_tokens": 2048, "top_p": 0.9}


def arrived(sim) -> dict:
    """The settings of the last chat request the simulator received (native API names)."""
    body = sim.requests[-1]
    return {
        "model": body["model"],
        "temperature": body["temperature"],
        "max_tokens": body["max_completion_tokens"],
        "top_p": body["top_p"],
    }


def ask(chat: ChatPage, question: str) -> None:
    asked = chat.questions.count()
    chat.send(question)
    # The page draws the question on its next animation frame: wait for it, then its answer.
    expect(chat.questions).to_have_count(asked + 1)
    chat.wait_for_status("complete", chat.answers.nth(asked))


def save_settings(page, values: dict) -> None:
    page.get_by_role("link", name="Default settings").click()
    page.wait_for_url("**/settings/")
    page.get_by_label("Model").select_option(values["model"])
    for label, name in [("Temperature", "temperature"), ("Max tokens", "max_tokens")]:
        page.get_by_label(label).fill(str(values[name]))
    page.get_by_label("Top p").fill(str(values["top_p"]))
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()


def back_to_chat(page) -> ChatPage:
    page.get_by_role("link", name="Chat", exact=True).click()
    expect_socket_open(page)
    return ChatPage(page)


def test_saved_settings_reach_the_model_for_new_chats_only(logged_in_page, sim):
    page = logged_in_page
    chat = ChatPage(page)
    ask(chat, "Before any settings")
    assert arrived(sim) == SITE
    first_chat = page.url

    save_settings(page, CHOSEN)
    page.reload()  # what was saved, not what was typed
    expect(page.get_by_label("Model")).to_have_value(CHOSEN["model"])
    expect(page.get_by_label("Top p")).to_have_value("0.75")

    chat = back_to_chat(page)
    expect(page.locator("#model-picker")).to_have_value(CHOSEN["model"])
    ask(chat, "With my settings")
    assert arrived(sim) == CHOSEN
    expect(chat.last_answer().locator(".message-meta")).to_contain_text(CHOSEN["model"])
    assert "temperature 0.3, top_p 0.75, max tokens 700" in chat.answer_content()

    # A conversation keeps the settings it started with.
    page.goto(first_chat)
    expect_socket_open(page)
    expect(chat.questions).to_have_count(1)  # loaded: ask() counts the questions shown
    expect(page.locator("#model-picker")).to_have_value(MODEL)
    ask(chat, "And here?")
    assert arrived(sim) == SITE

    # Blank fields fall back to the team's (here the site's) defaults again.
    page.get_by_role("link", name="Default settings").click()
    page.get_by_label("Model").select_option("")
    for label in ["Temperature", "Max tokens", "Top p"]:
        page.get_by_label(label).fill("")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    chat = back_to_chat(page)
    ask(chat, "Back to the defaults")
    assert arrived(sim) == SITE
