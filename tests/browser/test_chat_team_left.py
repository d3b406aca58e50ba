"""A tab still showing a team the user was removed from says so, and stops asking for it."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import BrowserUser, ChatPage, log_in

pytestmark = pytest.mark.browser


@pytest.fixture
def herd(app_server, user):
    """A team "Herd" with a monthly budget (the composer shows its meter), owned by `boss`, with
    `user` a member of it and of their personal team; returns the boss, the team's id and the personal team's name."""
    boss = BrowserUser(f"{user.username}-boss")
    app_server.create_user(boss.username)
    home = app_server.run_python(f"""
from django.contrib.auth import get_user_model
from chatapp.teams import actions
from chatapp.teams.models import Membership, Role, Team, TeamPolicy
users = get_user_model().objects
person = users.get(username={user.username!r})
herd = Team.objects.create(name="Herd")
TeamPolicy.objects.create(team=herd, monthly_token_budget=1_000_000)
Membership.objects.create(team=herd, user=users.get(username={boss.username!r}), role=Role.OWNER)
Membership.objects.create(team=herd, user=person, role=Role.MEMBER)
print(herd.pk)
print(actions.ensure_personal_team(person).name)
""").strip()
    team_id, personal = home.splitlines()
    return {"boss": boss, "id": int(team_id), "personal": personal}


def test_a_tab_of_a_team_the_user_was_removed_from_says_so_and_offers_their_team(
    browser, app_server, logged_in_page, user, herd, screenshot, page_watch
):
    page = logged_in_page
    chat = ChatPage(page)
    page.reload()  # the team picker lists the team joined since
    page.wait_for_selector("html[data-socket=open]")
    with page.expect_navigation():  # the page opens a new chat in the team chosen
        page.get_by_label("Team", exact=True).select_option(label="Herd")
    page.wait_for_selector("html[data-socket=open]")
    expect(page.locator('.budget-meter[data-kind="team"]')).to_be_visible()
    budget_requests = []
    page.on(
        "response",
        lambda response: "/api/budget/" in response.url and budget_requests.append(response),
    )
    chat.send("[sim:pace tps=8] [sim:long tokens=400] Count slowly")
    chat.wait_for_text_longer_than(0)

    # Another owner removes the user from the team while the answer streams.
    owner = browser.new_context(base_url=app_server.url)
    try:
        owner_page = owner.new_page()
        log_in(owner_page, herd["boss"])
        owner_page.goto(f"/teams/{herd['id']}/members/")
        owner_page.once("dialog", lambda dialog: dialog.accept())
        member = owner_page.get_by_role("row").filter(
            has=owner_page.get_by_role("cell", name=user.username, exact=True)
        )
        member.get_by_role("button", name="Remove").click()
        expect(member).to_have_count(0)
    finally:
        owner.close()

    notice = page.locator("#team-left-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("You are no longer a member of Herd.")
    go = notice.get_by_role("button", name=f"Go to {herd['personal']}")
    expect(go).to_be_visible()
    expect(chat.input).to_be_disabled()  # nothing more can be asked in the team
    expect(page.locator("#former-team-notice")).to_be_hidden()  # said once, above
    expect(page.locator("#budget-meters")).to_be_hidden()  # the team's numbers are not theirs
    path = screenshot(page, "team-left-notice")
    print(f"screenshot: {path}")

    # Another answer ending would redraw the meters: the page no longer asks for them.
    asked = len(budget_requests)
    assert all(response.status == 404 for response in budget_requests)
    page.evaluate("window.chatPage.budget.refresh()")
    assert len(budget_requests) == asked

    with page.expect_navigation():
        go.click()
    page.wait_for_selector("html[data-socket=open]")
    expect(page.locator(".team-chip")).to_have_text(herd["personal"])
    expect(page.locator("#team-left-notice")).to_be_hidden()
    expect(chat.input).to_be_enabled()
    assert page_watch.page_errors == []
