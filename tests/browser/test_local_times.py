"""Times on the server's pages, read in the viewer's own time zone (and in UTC without scripts)."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import log_in

pytestmark = pytest.mark.browser


def add_key(app_server, username: str) -> None:
    """A key last used on 6 December 2026 at 09:00 UTC, expiring at the end of 31 January 2027."""
    app_server.run_python(
        "from datetime import datetime, UTC\n"
        "from django.contrib.auth import get_user_model\n"
        "from chatapp.teams import actions\n"
        f"user = get_user_model().objects.get(username={username!r})\n"
        "end = datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC)\n"
        "key, _ = actions.create_api_key(user, None, 'laptop', end)\n"
        "key.last_used_at = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)\n"
        "key.save(update_fields=['last_used_at'])\n"
    )


def key_row(page):
    return page.locator("table.key-list tbody tr").filter(has_text="laptop")


def test_a_time_shows_in_the_viewers_time_zone(browser, app_server, user, sim):
    add_key(app_server, user.username)
    context = browser.new_context(base_url=app_server.url, timezone_id="Asia/Tokyo", locale="en-US")
    try:
        page = context.new_page()
        log_in(page, user)
        page.goto("/settings/")
        last_used = key_row(page).locator("td").nth(2).locator("time")
        expect(last_used).to_have_text("2026-12-06 18:00 GMT+9")
        expect(last_used).to_have_attribute(
            "title", "Sunday, December 6, 2026 at 6:00:00 PM GMT+9 (2026-12-06 09:00 UTC)"
        )
        expect(key_row(page).locator("td").nth(3)).to_have_text("2027-02-01 08:59 GMT+9")
    finally:
        context.close()


def test_without_scripts_a_time_says_it_is_utc(browser, app_server, user):
    add_key(app_server, user.username)
    context = browser.new_context(
        base_url=app_server.url, timezone_id="Asia/Tokyo", java_script_enabled=False
    )
    try:
        page = context.new_page()
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(user.password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/")
        page.goto("/settings/")
        last_used = key_row(page).locator("td").nth(2)
        expect(last_used).to_have_text("2026-12-06 09:00 UTC")
        expect(last_used.locator("time")).to_have_attribute("datetime", "2026-12-06T09:00:00+00:00")
        expect(key_row(page).locator("td").nth(3)).to_have_text("2027-01-31 23:59 UTC")
    finally:
        context.close()
