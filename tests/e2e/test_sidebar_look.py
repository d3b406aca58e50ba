"""The sidebar's headings, the team switcher and a temporary chat: axe finds nothing, in both
themes at desktop and phone sizes, and the screenshots are kept for a look."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, json_from, log_in
from tests.e2e.axe import violations
from tests.e2e.journeys import assert_clean, new_context, watched_page

pytestmark = pytest.mark.browser

SIZES = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


def seed(app_server, user) -> None:
    code = f"""
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from chatapp.chat.models import Conversation
from chatapp.teams.actions import ensure_personal_team
from chatapp.teams.models import Membership, Role, Team
owner = get_user_model().objects.get(username={user.username!r})
team = ensure_personal_team(owner)
crew = Team.objects.create(name="Design crew")
Membership.objects.create(team=crew, user=owner, role=Role.MEMBER)
for title, days, pinned in [("Quarterly plan", 40, True), ("Trip ideas", 1, False),
                            ("Reading list", 5, False), ("Budget review", 70, False)]:
    c = Conversation.objects.create(team=team, owner=owner, title=title, model="m")
    Conversation.objects.filter(pk=c.pk).update(
        updated_at=timezone.now() - timedelta(days=days), pinned=pinned)
print("{{}}")
"""
    json_from(app_server.run_python(code))


@pytest.mark.parametrize("size", SIZES)
def test_sidebar_and_temporary_chat_have_no_axe_violations(
    browser, app_server, user, sim, screenshot, size
):
    seed(app_server, user)
    context = new_context(browser, app_server.url, bypass_csp=True, viewport=SIZES[size])
    try:
        page, watch = watched_page(context, app_server.url)
        log_in(page, user)
        chat = ChatPage(page)
        chat.send("Compare two llamas")
        chat.wait_for_status("complete")
        found = {}
        for theme in ("light", "dark"):
            page.evaluate(f"localStorage.setItem('theme', {theme!r})")
            page.goto("/")
            expect(page.locator("html")).to_have_attribute("data-theme", theme)
            page.wait_for_selector("html[data-socket=open]")
            if size == "desktop":
                screenshot(page, f"sidebar-new-chat-{size}-{theme}")
            page.get_by_role("button", name="Temporary chat").click()
            chat.send("A passing thought")
            chat.wait_for_status("complete")
            expect(page.get_by_text("Not saved in your history")).to_be_visible()
            if size == "phone":
                page.get_by_role("button", name="Open conversations").click()
                # The drawer has slid in once it is wholly on the screen.
                expect(page.locator("#sidebar")).to_be_in_viewport(ratio=1)
            expect(page.get_by_role("heading", name="Pinned")).to_be_visible()
            expect(page.get_by_role("heading", name="Today")).to_be_visible()
            screenshot(page, f"sidebar-temporary-{size}-{theme}")
            if problems := violations(page):
                found[theme] = problems
        assert found == {}
        assert_clean(watch)
    finally:
        context.close()
