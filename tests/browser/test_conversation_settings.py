"""Per-conversation settings from the chat pane: prefilled, sent with the next message, reset."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, reload_holding
from tests.support.polling import wait_for

pytestmark = pytest.mark.browser


def native_params(request: dict) -> dict:
    return {k: request.get(k) for k in ("model", "temperature", "max_completion_tokens", "top_p")}


class SettingsPanel:
    def __init__(self, page):
        self.page = page
        self.toggle = page.get_by_role("button", name="This chat settings")
        self.dialog = page.get_by_role("dialog", name="This chat")
        self.model = page.get_by_label("Model", exact=True)  # the picker in the header
        self.temperature = self.dialog.get_by_label("Temperature")
        self.max_tokens = self.dialog.get_by_label("Max tokens")
        self.top_p = self.dialog.get_by_label("Top p")

    def open(self) -> None:
        self.toggle.click()
        expect(self.dialog).to_be_visible()


def restrict_to_the_first_model(app_server, user, models: list[str]) -> None:
    app_server.run_python(
        "from chatapp.teams.models import Membership, TeamPolicy\n"
        f"team = Membership.objects.get(user__username={user.username!r}).team\n"
        f"allowed = {{'allowed_models': [{models[0]!r}]}}\n"
        "TeamPolicy.objects.update_or_create(team=team, defaults=allowed)"
    )


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
    expect(panel.model).to_have_value(other)
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
    expect(panel.model).to_have_value(defaults["model"])


def test_an_out_of_range_setting_keeps_the_panel_open_with_the_error_inline(logged_in_page, sim):
    page = logged_in_page
    chat = ChatPage(page)
    panel = SettingsPanel(page)
    panel.open()
    expect(panel.temperature).not_to_have_value("")
    panel.temperature.fill("1.1")
    panel.toggle.click()  # closing is refused while a value is out of range
    expect(panel.dialog).to_be_visible()
    error = page.locator("#setting-temperature-error")
    expect(error).to_have_text("Temperature must be a number from 0 to 1.")
    expect(panel.temperature).to_have_attribute("aria-invalid", "true")
    expect(panel.temperature).to_be_focused()
    panel.temperature.press("Escape")
    expect(panel.dialog).to_be_visible()
    panel.max_tokens.fill("2.5")
    panel.dialog.get_by_role("button", name="Done").click()
    expect(page.locator("#setting-max_tokens-error")).to_contain_text(
        "Max tokens must be a whole number between 1 and"
    )

    chat.send("Too hot")
    assert sim.requests == []
    assert chat.input.input_value() == "Too hot"
    expect(page.locator("#chat-notice")).to_be_hidden()  # no banner, no Retry

    panel.temperature.fill("0.5")
    expect(error).to_be_hidden()
    panel.max_tokens.fill("300")
    panel.dialog.get_by_role("button", name="Done").click()
    expect(panel.dialog).to_be_hidden()
    chat.input.press("Enter")
    chat.wait_for_status("complete")
    assert native_params(sim.requests[-1])["temperature"] == 0.5


def test_an_out_of_range_value_is_announced_where_the_keyboard_already_is(logged_in_page):
    page = logged_in_page
    panel = SettingsPanel(page)
    panel.open()
    expect(panel.temperature).to_be_focused()
    panel.temperature.fill("1.1")
    page.keyboard.press("Enter")  # Done, from the field: the focus does not move
    expect(panel.dialog).to_be_visible()
    expect(panel.temperature).to_be_focused()
    # Nothing is read out on a focus that stays: the error says itself.
    expect(panel.dialog.get_by_role("alert")).to_have_text(
        "Temperature must be a number from 0 to 1."
    )


def test_tabbing_out_of_the_panel_closes_it_unless_a_value_is_out_of_range(logged_in_page):
    page = logged_in_page
    panel = SettingsPanel(page)
    done = panel.dialog.get_by_role("button", name="Done")
    panel.open()
    panel.temperature.fill("0.3")
    done.focus()
    page.keyboard.press("Tab")
    expect(panel.dialog).to_be_hidden()  # it would cover where focus went
    expect(panel.toggle).to_have_attribute("aria-expanded", "false")
    expect(panel.toggle).not_to_be_focused()  # focus stays where Tab took it
    assert page.evaluate("document.activeElement !== document.body")
    panel.open()
    expect(panel.temperature).to_have_value("0.3")  # kept for the next message

    panel.temperature.fill("1.1")
    done.focus()
    page.keyboard.press("Tab")
    expect(panel.dialog).to_be_visible()
    expect(page.locator("#setting-temperature-error")).to_have_text(
        "Temperature must be a number from 0 to 1."
    )
    assert page.evaluate(
        "!document.getElementById('settings-panel').contains(document.activeElement)"
    )


def test_a_setting_the_server_refuses_shows_on_its_field_without_retry(
    logged_in_page, sim, app_server, user
):
    page = logged_in_page
    chat = ChatPage(page)
    panel = SettingsPanel(page)
    models = [m["id"] for m in chat.api("/api/models/")["models"]]
    panel.model.select_option(models[1])
    restrict_to_the_first_model(app_server, user, models)  # meanwhile, by the team's admins
    chat.send("Use the other model")
    error = page.locator("#model-picker-error")
    expect(error).to_contain_text("is not available in this team")
    expect(panel.model).to_have_attribute("aria-invalid", "true")
    expect(panel.model).to_have_value(models[0])  # back to the conversation's model
    expect(page.locator("#notice-retry")).to_be_hidden()
    assert chat.input.input_value() == "Use the other model"
    assert sim.requests == []


def test_a_setting_changed_while_the_defaults_load_is_kept_and_sent(logged_in_page, sim):
    page = logged_in_page
    chat = ChatPage(page)
    panel = SettingsPanel(page)
    held = reload_holding(page, "**/api/settings/**")  # until the question has gone
    panel.open()
    panel.max_tokens.fill("5")
    panel.max_tokens.press("Escape")
    chat.send("Tell me everything about llamas")  # before the defaults arrive
    wait_for(lambda: sim.requests, "the question's request")
    assert sim.requests[0]["max_completion_tokens"] == 5
    held[0].continue_()  # the defaults arrive late: the user's value stays
    chat.wait_for_status("complete")
    panel.open()
    expect(panel.max_tokens).to_have_value("5")


def test_settings_changed_while_a_conversation_loads_are_kept_and_sent(logged_in_page, sim):
    page = logged_in_page
    chat = ChatPage(page)
    panel = SettingsPanel(page)
    models = [m["id"] for m in chat.api("/api/models/")["models"]]
    chat.send("First question")
    chat.wait_for_status("complete")
    conversation_id = chat.conversation_id()
    stored = chat.api(f"/api/conversations/{conversation_id}/")["settings"]
    other = next(m for m in models if m != stored["model"])
    # The conversation is held back while the user changes its settings.
    held = reload_holding(page, f"**/api/conversations/{conversation_id}/")
    panel.model.select_option(other)
    panel.open()
    panel.temperature.fill("0.15")
    panel.temperature.press("Escape")
    held[0].continue_()  # it arrives: the user's choices stay
    expect(chat.answers).to_have_count(1)
    expect(panel.model).to_have_value(other)
    panel.open()
    expect(panel.temperature).to_have_value("0.15")
    panel.temperature.press("Escape")
    chat.send("Second question")
    chat.wait_for_status("complete", chat.answers.nth(1))
    sent = native_params(sim.requests[-1])
    assert (sent["model"], sent["temperature"]) == (other, 0.15)


def test_a_model_refused_before_the_defaults_load_goes_back_to_the_default(
    logged_in_page, sim, app_server, user
):
    page = logged_in_page
    chat = ChatPage(page)
    panel = SettingsPanel(page)
    models = [m["id"] for m in chat.api("/api/models/")["models"]]
    held = reload_holding(page, "**/api/settings/**")
    panel.model.select_option(models[1])
    restrict_to_the_first_model(app_server, user, models)
    chat.send("Use the other model")  # before the defaults arrive
    expect(page.locator("#model-picker-error")).to_contain_text("is not available in this team")
    expect(panel.model).to_have_value(models[0])  # the new chat's model, not the refused one
    held[0].continue_()
    chat.input.press("Enter")
    chat.wait_for_status("complete")
    assert sim.requests[-1]["model"] == models[0]


def test_an_answer_cut_at_max_tokens_says_so_and_keeps_saying_it(logged_in_page, sim):
    page = logged_in_page
    chat = ChatPage(page)
    panel = SettingsPanel(page)
    panel.open()
    panel.max_tokens.fill("5")
    panel.max_tokens.press("Escape")
    chat.send("Tell me everything about llamas")
    chat.wait_for_status("complete")
    notice = chat.last_answer().locator(".message-notice")
    expect(notice).to_contain_text("reached its length limit")
    page.reload()  # from the conversation API
    chat.wait_for_status("complete")
    expect(notice).to_contain_text("reached its length limit")
    panel.open()
    panel.max_tokens.fill("2000")
    panel.max_tokens.press("Escape")
    # The notice's advice: more tokens, then Regenerate (which takes the panel's settings).
    asked = len(sim.requests)
    chat.last_answer().get_by_role("button", name="Regenerate").click()
    # The old answer reads "complete" until the new one replaces it: wait for its request.
    wait_for(lambda: len(sim.requests) > asked, "the regenerated answer's request")
    assert sim.requests[asked]["max_completion_tokens"] == 2000
    chat.wait_for_status("complete")
    expect(chat.answers).to_have_count(1)
    expect(notice).to_be_hidden()
    chat.last_answer().get_by_role("group", name="Version 2 of 2").get_by_role(
        "button", name="Previous version"
    ).click()
    expect(notice).to_contain_text("length limit")  # the first version keeps its notice


def test_an_edited_question_is_answered_with_the_settings_picked_meanwhile(logged_in_page, sim):
    page = logged_in_page
    chat = ChatPage(page)
    panel = SettingsPanel(page)
    chat.send("How tall are llamas?")
    chat.wait_for_status("complete")
    first_model = chat.api(f"/api/conversations/{chat.conversation_id()}/")["settings"]["model"]
    other = next(m["id"] for m in chat.api("/api/models/")["models"] if m["id"] != first_model)
    panel.model.select_option(other)
    panel.open()
    panel.temperature.fill("0.3")
    panel.temperature.press("Escape")

    question = chat.questions.first
    question.hover()
    question.get_by_role("button", name="Edit this question").click()
    editor = question.get_by_label("Edit your question")
    editor.fill("How heavy are llamas?")
    asked = len(sim.requests)
    editor.press("Enter")
    wait_for(lambda: len(sim.requests) > asked, "the edited question's request")
    chat.wait_for_status("complete")
    assert native_params(sim.requests[asked])["model"] == other
    assert native_params(sim.requests[asked])["temperature"] == 0.3
    expect(panel.model).to_have_value(other)
    data = chat.api(f"/api/conversations/{chat.conversation_id()}/")
    assert (data["settings"]["model"], data["settings"]["temperature"]) == (other, 0.3)
    assert data["messages"][-1]["model"] == other
    expect(chat.last_answer().locator(".message-meta")).to_contain_text(other)


def test_settings_another_tab_sent_with_show_here_and_what_is_shown_is_what_is_sent(
    logged_in_page, context, sim
):
    """Two tabs on one conversation: the first changes its model and temperature and sends.
    The second's picker and panel follow (the next answer uses them), so picking back what
    it showed before is a change that is sent, not a no-op."""
    first = logged_in_page
    chat = ChatPage(first)
    chat.send("Plan the offsite")
    chat.wait_for_status("complete")
    defaults = chat.api("/api/settings/")["effective"]
    models = [m["id"] for m in chat.api("/api/models/")["models"]]
    other = next(m for m in models if m != defaults["model"])
    second = context.new_page()
    second.goto(f"/c/{chat.conversation_id()}/")
    second.wait_for_selector("html[data-socket=open]")
    there = SettingsPanel(second)
    expect(there.model).to_have_value(defaults["model"])

    here = SettingsPanel(first)
    here.model.select_option(other)
    here.open()
    here.temperature.fill("0.25")
    here.temperature.press("Escape")
    chat.send("With another model")
    chat.wait_for_status("complete")
    ChatPage(second).wait_for_status("complete", ChatPage(second).answers.nth(1))

    expect(there.model).to_have_value(other)
    there.open()
    expect(there.temperature).to_have_value("0.25")
    there.temperature.fill(str(defaults["temperature"]))
    there.temperature.press("Escape")
    there.model.select_option(defaults["model"])
    asked = len(sim.requests)
    ChatPage(second).send("Back to the default model")
    wait_for(lambda: len(sim.requests) > asked, "the second tab's request")
    sent = native_params(sim.requests[asked])
    assert (sent["model"], sent["temperature"]) == (defaults["model"], defaults["temperature"])


def test_a_new_chat_starts_from_the_default_model_saved_since_the_page_opened(logged_in_page, sim):
    """The settings page, in another tab, saves another default model: the next new chat in
    this tab offers it in the picker and asks it, as it takes the new default temperature."""
    page = logged_in_page
    chat = ChatPage(page)
    panel = SettingsPanel(page)
    defaults = chat.api("/api/settings/")["effective"]
    models = [m["id"] for m in chat.api("/api/models/")["models"]]
    other = next(m for m in models if m != defaults["model"])
    chat.send("Before the change")
    chat.wait_for_status("complete")
    saved = page.evaluate(
        """async (model) => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)?.[1]
                ?? document.querySelector("[name=csrfmiddlewaretoken]")?.value;
            const response = await fetch("/api/settings/", {
                method: "PUT",
                headers: {"Content-Type": "application/json", "X-CSRFToken": token},
                body: JSON.stringify({model, temperature: 0.3}),
            });
            return response.status;
        }""",
        other,
    )
    assert saved == 200

    page.get_by_role("button", name="New chat").click()
    panel.open()
    expect(panel.temperature).to_have_value("0.3")
    panel.temperature.press("Escape")
    expect(panel.model).to_have_value(other)
    asked = len(sim.requests)
    chat.send("After the change")
    wait_for(lambda: len(sim.requests) > asked, "the new chat's request")
    assert native_params(sim.requests[asked])["model"] == other
