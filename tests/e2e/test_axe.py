"""axe-core finds nothing on the main pages, in the light and the dark theme."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, log_in
from tests.browser.conftest import PHONE
from tests.e2e.axe import violations
from tests.e2e.journeys import assert_clean, new_context, watched_page

pytestmark = pytest.mark.browser

THEMES = ["light", "dark"]


def test_the_main_pages_have_no_axe_violations_in_either_theme(browser, app_server, user, sim):
    context = new_context(browser, app_server.url, bypass_csp=True)
    try:
        page, watch = watched_page(context, app_server.url)
        found: dict[str, list[str]] = {}

        def audit(label: str) -> None:
            for theme in THEMES:
                page.evaluate(f"localStorage.setItem('theme', {theme!r})")
                page.reload()
                expect(page.locator("html")).to_have_attribute("data-theme", theme)
                if label.startswith("chat"):
                    page.wait_for_selector("html[data-socket=open]")
                    ChatPage(page).wait_for_status("complete")
                if problems := violations(page):
                    found[f"{theme}: {label}"] = problems

        page.goto("/accounts/login/")
        audit("login")
        log_in(page, user)
        chat = ChatPage(page)
        chat.send("Some code, please")
        chat.wait_for_status("complete")
        audit("chat with an answer")

        page.goto("/teams/")
        page.get_by_label("Name").fill("Accessible team")
        page.get_by_role("button", name="Create team").click()
        page.wait_for_url(re.compile(r"/teams/\d+/$"))
        team_url = page.url
        page.goto(team_url + "members/")
        page.get_by_role("button", name="Create invitation").click()
        expect(page.get_by_label("Invitation link")).to_be_visible()
        for label, path in [
            ("settings", "/settings/"),
            ("teams", "/teams/"),
            ("team overview", team_url),
            ("team members", team_url + "members/"),
            ("team prompts", team_url + "prompts/"),
            ("team policy", team_url + "policy/"),
            ("team usage", team_url + "usage/"),
        ]:
            page.goto(path)
            audit(label)
        assert found == {}

        # The check can fail: an image without a text alternative is found.
        page.evaluate("document.querySelector('main').append(document.createElement('img'))")
        assert any(line.startswith("image-alt:") for line in violations(page))
        assert_clean(watch)
    finally:
        context.close()


def test_the_chat_on_a_phone_has_no_axe_violations(browser, app_server, user, sim):
    context = new_context(browser, app_server.url, viewport=PHONE, bypass_csp=True)
    try:
        page, watch = watched_page(context, app_server.url)
        log_in(page, user)
        chat = ChatPage(page)
        chat.send("A question with a long code line please")
        chat.wait_for_status("complete")
        found = {}
        for theme in THEMES:
            page.evaluate(f"localStorage.setItem('theme', {theme!r})")
            page.reload()
            chat.wait_for_status("complete")
            found[theme] = violations(page)
        assert found == {"light": [], "dark": []}
        assert_clean(watch)
    finally:
        context.close()
