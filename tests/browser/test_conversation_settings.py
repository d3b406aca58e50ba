"""Per-conversation settings from the chat pane: prefilled, sent with the next message, reset."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage

pytestmark = pytest.mark.browser


def native_params(request: dict) -> dict:
    return {k: request.get(k) for k in ("model", "temperature", "max_completion_tokens", "top_p")}


class SettingsPanel:
    def __init__(self, page):
        self.page = page
        self.toggle = page.get_by_role("button", name="Settings", exact=True)
        self.dialog = page.get_by_role("dialog", name="This conversation")
        self.model = self.dialog.get_by_label("Model")
        self.temperature = self.dialog.get_by_label("Temperature")
        self.max_tokens = self.dialog.get_by_label("Max tokens")
        self.top_p = self.dialog.get_by_label("Top p")

    def open(self) -> None:
        self.toggle.click()
        expect(self.dialog).to_be_visible()


def test_changed_settings_go_with_the_next_message_and_a_new_chat_uses_defaults(
    logged_in_page, sim
):
    page = logged_in_page
    chat = ChatPage(page)
    panel = SettingsPanel(page)
    defaults = chat.api("/api/settings/")["effective"]
    models = [m["id"] for m in chat.api("/api/models/")["models"]]
    other = next(m for m in models if m != defaults["model"])

    panel.open()
    expect(panel.model).to_have_value(defaults["model"])
    expect(panel.temperature).to_have_value(str(defaults["temperature"]))
    expect(panel.max_tokens).to_have_value(str(defaults["max_tokens"]))
    panel.model.select_option(other)
    panel.temperature.fill("0.25")
    panel.max_tokens.fill("321")
    panel.top_p.fill("0.5")
    panel.temperature.press("Escape")
    expect(panel.dialog).to_be_hidden()
    expect(panel.toggle).to_be_focused()

    chat.send("Hello with my own settings")
    chat.wait_for_status("complete")
    assert native_params(sim.requests[-1]) == {
        "model": other,
        "temperature": 0.25,
        "max_completion_tokens": 321,
        "top_p": 0.5,
    }
    expect(page.locator("#model-badge")).to_have_text(other)
    stored = chat.api(f"/api/conversations/{chat.conversation_id()}/")["settings"]
    assert (stored["model"], stored["temperature"], stored["max_tokens"]) == (other, 0.25, 321)

    chat.send("And again")  # the conversation keeps its settings
    chat.wait_for_status("complete", chat.answers.nth(1))
    assert native_params(sim.requests[-1])["max_completion_tokens"] == 321

    page.get_by_role("button", name="New chat").click()
    panel.open()
    expect(panel.temperature).to_have_value(str(defaults["temperature"]))
    panel.toggle.click()
    chat.send("A fresh chat")
    chat.wait_for_status("complete")
    sent = native_params(sim.requests[-1])
    assert sent["model"] == defaults["model"]
    assert sent["temperature"] == defaults["temperature"]
    assert sent["max_completion_tokens"] == defaults["max_tokens"]
    expect(page.locator("#model-badge")).to_have_text(defaults["model"])


def test_a_refused_setting_is_shown_on_its_field_and_nothing_is_sent(logged_in_page, sim):
    page = logged_in_page
    chat = ChatPage(page)
    panel = SettingsPanel(page)
    panel.open()
    expect(panel.temperature).not_to_have_value("")
    panel.temperature.fill("9")
    panel.toggle.click()
    chat.send("Too hot")
    expect(panel.dialog).to_be_visible()
    expect(panel.dialog.get_by_role("alert")).to_contain_text("temperature must be a number")
    expect(panel.temperature).to_have_attribute("aria-invalid", "true")
    assert sim.requests == []
    assert chat.input.input_value() == "Too hot"
