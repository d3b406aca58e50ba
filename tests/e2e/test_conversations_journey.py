"""Keeping conversations tidy: find one, rename it, take a copy home, delete another."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage

pytestmark = pytest.mark.browser

QUESTIONS = ["Plan a trip to Cusco", "Recipe for quinoa salad", "Alpaca or llama?"]


def start_chat(page, chat: ChatPage, question: str) -> None:
    page.get_by_role("button", name="New chat").click()
    expect(chat.answers).to_have_count(0)
    chat.send(question)
    chat.wait_for_status("complete")
    page.get_by_role("link", name=question).wait_for()


def titles(page) -> list[str]:
    return page.locator(".conversation-name").all_inner_texts()


def search_for(page, text: str, expected: list[str]) -> None:
    # Wait for the list's own request: the rows it shows before may already match.
    with page.expect_response(lambda response: "/api/conversations/?q=" in response.url):
        page.get_by_label("Search conversations").fill(text)
    expect(page.locator(".conversation-name")).to_have_text(expected)


def row_action(page, title: str, action: str) -> None:
    """Point at a conversation in the sidebar, open its menu and pick one of its actions."""
    page.locator(".conversation-item", has=page.get_by_role("link", name=title)).hover()
    page.get_by_role("button", name=f"Actions for “{title}”").click()
    page.get_by_role("menuitem", name=action).click()


def test_search_rename_export_and_delete(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    for question in QUESTIONS:
        start_chat(page, chat, question)
    assert titles(page) == QUESTIONS[::-1]  # newest first

    # Search matches titles, and message text the titles do not contain.
    search_for(page, "quinoa", ["Recipe for quinoa salad"])
    search_for(page, "built-in Llama API simulator", QUESTIONS[::-1])  # only in the answers
    search_for(page, "", QUESTIONS[::-1])

    # Rename the open conversation: the sidebar, the header and the tab title follow.
    row_action(page, "Alpaca or llama?", "Rename")
    title_box = page.get_by_label("New title")
    title_box.fill("Camelids compared")
    title_box.press("Enter")
    page.get_by_role("link", name="Camelids compared").wait_for()
    expect(page.locator("#conversation-title")).to_have_text("Camelids compared")
    expect(page).to_have_title("Camelids compared · Llama team chat")

    # Export it as Markdown from the header: the file holds exactly what the page shows.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download as Markdown").click()
    download = download_info.value
    conversation_id = chat.conversation_id()
    assert download.suggested_filename == f"camelids-compared-{conversation_id}.md"
    exported = open(download.path(), encoding="utf-8").read()
    assert exported.startswith("# Camelids compared\n")
    assert f"## You\n\nAlpaca or llama?\n\n## Assistant\n\n{chat.answer_content()}\n" in exported

    # Delete another one after confirming: gone from the list, the search and the server.
    row_action(page, "Plan a trip to Cusco", "Delete")
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.get_by_role("link", name="Plan a trip to Cusco").wait_for(state="detached")
    search_for(page, "Cusco", [])
    expect(page.get_by_text("No conversations match “Cusco”.")).to_be_visible()
    page.reload()
    page.get_by_role("link", name="Camelids compared").wait_for()
    assert sorted(titles(page)) == ["Camelids compared", "Recipe for quinoa salad"]
    listed = chat.api("/api/conversations/?q=")["results"]
    assert sorted(c["title"] for c in listed) == ["Camelids compared", "Recipe for quinoa salad"]
