"""The API keys and budget meters as a person meets them in Chromium: a key made and shown
once on the settings page, the meters in the composer filling up after an answer, and axe-core
finding nothing on those pages in either theme."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, log_in
from tests.e2e.axe import violations
from tests.e2e.journeys import assert_clean, new_context, watched_page

pytestmark = pytest.mark.browser


def seed_team(app_server, username: str) -> int:
    """A team the user owns, 79% of its budget used, and a key of theirs."""
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from chatapp.teams import actions\n"
        "from chatapp.teams.models import TeamPolicy\n"
        f"user = get_user_model().objects.get(username={username!r})\n"
        "team = actions.create_team(user, 'Budgeted')\n"
        "TeamPolicy.objects.create(team=team, monthly_token_budget=10000,"
        " member_monthly_token_budget=100000)\n"
        "actions.record_usage(team, user, 'm', 7900, 0)\n"
        "actions.create_api_key(user, team, 'nightly report')\n"
        "print(team.pk)"
    )
    return int(app_server.run_python(code).strip())


def test_keys_and_meters_in_chromium(browser, app_server, user, sim):
    team_id = seed_team(app_server, user.username)
    context = new_context(browser, app_server.url, bypass_csp=True)
    try:
        page, watch = watched_page(context, app_server.url)
        log_in(page, user)  # the seeded team is their first, so their current one

        page.goto("/settings/")
        page.get_by_label("Name").fill("laptop")
        page.get_by_role("button", name="Create key").click()
        secret = page.get_by_label("The new API key").input_value()
        assert secret.startswith("ltc_")
        page.goto("/settings/")
        expect(page.get_by_text("laptop")).to_be_visible()
        assert secret not in page.content()

        page.goto("/")
        meter = page.locator('.budget-meter[data-kind="team"]')
        expect(meter).to_have_class(re.compile("budget-ok"))
        chat = ChatPage(page)
        chat.send("[sim:long tokens=300] Tell me a long story")
        chat.wait_for_status("complete")
        expect(meter).to_have_class(re.compile("budget-warn"))  # past 80% after this answer
        expect(meter.locator(".budget-text")).to_contain_text("%")

        found = {}
        for path in ("/", "/settings/", f"/teams/{team_id}/members/", f"/teams/{team_id}/usage/"):
            for theme in ("light", "dark"):
                page.goto(path)
                page.evaluate(f"localStorage.setItem('theme', {theme!r})")
                page.reload()
                if problems := violations(page):
                    found[f"{theme}: {path}"] = problems
        assert found == {}
        assert_clean(watch)
    finally:
        context.close()


def test_the_meters_line_up_with_the_composer(logged_in_page, app_server, user):
    seed_team(app_server, user.username)
    page = logged_in_page
    page.goto("/teams/")
    page.get_by_role("row").filter(has_text="Budgeted").get_by_role("button").click()
    page.goto("/")
    meters = page.locator("#budget-meters")
    expect(meters.locator(".budget-meter").first).to_be_visible()
    composer = page.locator("#composer").bounding_box()
    box = meters.bounding_box()
    assert abs(box["x"] - composer["x"]) <= 8, (box, composer)
    assert box["x"] + box["width"] <= composer["x"] + composer["width"] + 8
