"""JSON output on the chat page: picked in "This chat", shown formatted, a broken one noted."""

import json

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage

pytestmark = pytest.mark.browser

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city", "days"],
}


def save_schema(app_server, username: str, schema: dict = SCHEMA) -> int:
    output = app_server.run_python(
        "from django.contrib.auth import get_user_model\n"
        "from chatapp.teams.actions import ensure_personal_team\n"
        "from chatapp.teams.models import JsonSchema\n"
        f"team = ensure_personal_team(get_user_model().objects.get(username={username!r}))\n"
        f"saved = JsonSchema.objects.create(team=team, name='trip', schema={schema!r})\n"
        "print(saved.pk)\n"
    )
    return int(output.strip().splitlines()[-1])


def test_a_json_answer_is_formatted_and_a_broken_one_is_noted(
    app_server, user, logged_in_page, page_watch, sim, screenshot
):
    schema_id = save_schema(app_server, user.username)
    page = logged_in_page
    page.reload()  # the panel lists the team's schemas
    page.wait_for_selector("html[data-socket=open]")  # the page's script has set it up
    chat = ChatPage(page)
    page.get_by_role("button", name="This chat settings").click()
    dialog = page.get_by_role("dialog", name="This chat")
    dialog.get_by_label("Answer format").select_option(label="JSON schema: trip")
    dialog.get_by_role("button", name="Done").click()

    chat.send("Plan a trip")
    chat.wait_for_status("complete")
    # The answer's request; the title's may come before or after it is complete.
    formats = [r["response_format"] for r in sim.requests if "response_format" in r]
    assert [f["json_schema"]["name"] for f in formats] == ["trip"]
    answer = chat.last_answer()
    block = answer.locator("pre.json-answer code")
    expect(block).to_have_text(json.dumps({"city": "Plan a trip", "days": 1}, indent=2))
    expect(answer.locator(".code-language")).to_have_text("json")
    expect(answer.locator(".message-notice")).to_be_hidden()

    chat.send("<b>Another</b> [sim:bad_json]")
    chat.wait_for_status("complete", chat.answers.nth(1))
    broken = chat.answers.nth(1)
    notice = broken.locator(".message-notice")
    expect(notice).to_contain_text("not the JSON that was asked for (schema trip)")
    expect(notice).to_contain_text("The answer is not JSON")
    # The text stays text: the question's markup arrives as characters, not as an element.
    expect(broken.locator("pre.json-answer code")).to_contain_text('"city": "<b>Anoth')
    assert broken.locator("pre.json-answer b").count() == 0
    screenshot(page, "json-output-answers")

    page.reload()
    chat.wait_for_status("complete", chat.answers.nth(1))
    expect(chat.answers.nth(1).locator(".message-notice")).to_contain_text("The answer is not JSON")
    expect(chat.answers.first.locator("pre.json-answer code")).to_contain_text('"days": 1')
    conversation = chat.api(f"/api/conversations/{chat.conversation_id()}/")
    assert conversation["response_format"] == {
        "type": "json_schema",
        "schema_id": schema_id,
        "name": "trip",
    }
    assert page_watch.page_errors == [] and page_watch.console_errors == []


def test_a_json_answer_is_shown_with_its_numbers_as_the_model_wrote_them(
    app_server, user, logged_in_page, page_watch, sim
):
    """Pretty-printing re-indents the answer's text: read into JavaScript numbers and written
    back, 12345678901234567890 became 12345678901234567000."""
    schema = {
        "type": "object",
        "properties": {
            "order": {"type": "integer", "const": 12345678901234567890},
            "lines": {"type": "array", "items": {"type": "array"}, "minItems": 1},
            "note": {"type": "object"},
        },
    }
    save_schema(app_server, user.username, schema)
    page = logged_in_page
    page.reload()
    page.wait_for_selector("html[data-socket=open]")
    chat = ChatPage(page)
    page.get_by_role("button", name="This chat settings").click()
    dialog = page.get_by_role("dialog", name="This chat")
    dialog.get_by_label("Answer format").select_option(label="JSON schema: trip")
    dialog.get_by_role("button", name="Done").click()

    chat.send("An order")
    chat.wait_for_status("complete")
    shown = chat.last_answer().locator("pre.json-answer code")
    expect(shown).to_contain_text('"order": 12345678901234567890')
    # The keys come in the order the model wrote them (PostgreSQL keeps a schema's properties
    # in its own order), indented as JSON.stringify(value, null, 2) would.
    text = shown.inner_text()
    answer = {"order": 12345678901234567890, "lines": [["An order"]], "note": {}}
    assert json.loads(text) == answer
    assert text == json.dumps(json.loads(text), indent=2)
    assert page_watch.page_errors == [] and page_watch.console_errors == []


def test_an_owner_adds_a_schema_on_the_team_page(app_server, user, logged_in_page, screenshot):
    page = logged_in_page
    team_id = page.evaluate("async () => (await (await fetch('/api/me/')).json()).current_team.id")
    page.goto(f"/teams/{team_id}/json-schemas/")
    page.get_by_label("Name").fill("trip")
    page.get_by_label("JSON Schema").fill("{not json")
    page.get_by_role("button", name="Add schema").click()
    expect(page.get_by_text("This is not JSON")).to_be_visible()

    page.get_by_label("JSON Schema").fill(json.dumps(SCHEMA))
    page.get_by_role("button", name="Add schema").click()
    expect(page.get_by_role("heading", name="trip")).to_be_visible()
    expect(page.locator(".prompt-text")).to_contain_text('"required": [')
    screenshot(page, "json-output-team-schemas")
