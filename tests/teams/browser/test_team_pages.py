"""Team pages in real Chromium against a live daphne: forms, invitations, confirmations, CSP."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import BrowserUser, log_in
from tests.e2e.contrast import contrast_of

pytestmark = pytest.mark.browser
SECTIONS = ["", "members/", "prompts/", "policy/", "provider/", "usage/", "audit/"]


def create_team(page, name: str) -> str:
    page.goto("/teams/")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create team").click()
    page.wait_for_url(re.compile(r"/teams/\d+/$"))
    return page.url


def test_every_team_page_renders_without_console_errors(page, page_watch, user, sim):
    log_in(page, user)
    team_url = create_team(page, "Browser team")
    for section in SECTIONS:
        page.goto(team_url + section)
        assert page.get_by_role("heading", name="Browser team").is_visible(), section
        assert page_watch.console_errors == [], section
        assert page_watch.page_errors == [], section
    assert page_watch.offsite_requests == []


def test_muted_text_in_the_current_teams_row_is_readable_in_both_themes(page, user, sim):
    log_in(page, user)
    for theme in ["light", "dark"]:
        page.evaluate(f"localStorage.setItem('theme', {theme!r})")
        page.goto("/teams/")
        personal = "tr.is-current .muted"
        assert page.locator(personal).inner_text() == "(personal)"
        ratio = contrast_of(page, {"personal": personal})["personal"]["ratio"]
        assert ratio >= 4.5, (theme, ratio)


def test_invite_accept_and_remove_with_confirmation(page, context, browser, app_server, user, sim):
    log_in(page, user)
    team_url = create_team(page, "Invite team")
    page.goto(team_url + "members/")
    page.get_by_role("button", name="Create invitation").click()
    link = page.get_by_label("Invitation link").input_value()

    guest = BrowserUser(user.username + "_guest")
    app_server.create_user(guest.username)
    other = browser.new_context(base_url=app_server.url)
    guest_page = other.new_page()
    guest_page.goto(link)
    guest_page.wait_for_url(re.compile(r"/accounts/login/\?next=/invite/"))
    guest_page.get_by_label("Username").fill(guest.username)
    guest_page.get_by_label("Password").fill(guest.password)
    guest_page.get_by_role("button", name="Log in").click()
    guest_page.get_by_role("button", name="Accept and join").click()
    guest_page.wait_for_url(team_url)
    assert guest_page.get_by_text("Your role: Member").is_visible()
    other.close()

    page.goto(team_url + "members/")
    row = page.get_by_role("row").filter(has_text=guest.username)
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Remove").click()
    assert page.get_by_role("row").filter(has_text=guest.username).count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Remove").click()
    page.wait_for_load_state()
    assert page.get_by_text(f"Removed {guest.username} from the team.").is_visible()
    assert page.get_by_role("row").filter(has_text=guest.username).count() == 0


REFUSE_CLIPBOARD = """
navigator.clipboard.writeText = () => Promise.reject(new DOMException("denied", "NotAllowedError"));
document.execCommand = () => false;
"""


def test_invitation_links_copy_with_a_button_or_say_how(page, context, app_server, user, sim):
    from playwright.sync_api import expect

    log_in(page, user)
    team_url = create_team(page, "Copy team")
    page.goto(team_url + "members/")
    page.get_by_role("button", name="Create invitation").click()
    link = page.get_by_label("Invitation link").input_value()
    assert "/invite/" in link

    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_server.url)
    page.get_by_role("button", name="Copy link").click()
    expect(page.get_by_role("status").filter(has_text="Link copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == link

    # A browser that refuses both ways of copying: the link is selected, and the page says so.
    page.add_init_script(REFUSE_CLIPBOARD)
    page.reload()
    page.get_by_role("button", name="Copy link").click()
    expect(page.get_by_role("status").filter(has_text="press Ctrl+C")).to_be_visible()
    field = page.get_by_label("Invitation link")
    expect(field).to_be_focused()
    selected = field.evaluate("(el) => el.value.slice(el.selectionStart, el.selectionEnd)")
    assert selected == link


USAGE_SEED = """
from django.utils import timezone
from chatapp.teams.models import Team, TeamUsage
from django.contrib.auth import get_user_model
team = Team.objects.get(pk={team})
user = get_user_model().objects.get(username={username!r})
TeamUsage.objects.create(team=team, user=user, model="m", day=timezone.now().date(),
                         prompt_tokens=4000, completion_tokens=6000, requests=3)
"""

MEMBER_LIMIT_SEED = """
from chatapp.teams.models import TeamPolicy
limit = {{"member_monthly_token_budget": 10**6}}
TeamPolicy.objects.update_or_create(team_id={team}, defaults=limit)
"""


def rgb(css_colour: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", css_colour)[:3])


def test_usage_chart_bars_differ_and_its_labels_stay_readable_on_a_phone(
    phone_page, app_server, user, screenshot
):
    page = phone_page
    team_url = create_team(page, "Usage team")
    team = int(re.search(r"/teams/(\d+)/", team_url).group(1))
    app_server.run_python(USAGE_SEED.format(team=team, username=user.username))
    for theme in ["light", "dark"]:
        page.evaluate(f"localStorage.setItem('theme', {theme!r})")
        page.goto(team_url + "usage/")
        prompt, completion = (
            rgb(page.locator(f".bar-{part}").first.evaluate("(el) => getComputedStyle(el).fill"))
            for part in ["prompt", "completion"]
        )
        distance = sum((a - b) ** 2 for a, b in zip(prompt, completion, strict=True)) ** 0.5
        assert distance > 120, (theme, prompt, completion)
        labels = page.locator(".usage-chart .chart-label")
        assert labels.count() > 5
        sizes = labels.evaluate_all(
            "(els) => els.map((el) => parseFloat(getComputedStyle(el).fontSize))"
        )
        assert min(sizes) >= 11, (theme, sizes)
        day_one = page.locator(".chart-days li").first.bounding_box()
        assert day_one["height"] >= 11
        screenshot(page, f"usage-phone-{theme}", full_page=True)


def test_members_api_keys_fit_a_phone(phone_page):
    page = phone_page
    team_url = create_team(page, "Phone team")
    page.goto("/settings/")
    page.get_by_label("Name").fill("a script with a long name")
    page.get_by_role("button", name="Create key").click()
    page.get_by_label("The new API key").wait_for()
    page.goto(team_url + "members/")
    row = page.locator("#member-keys").get_by_role("row").filter(has_text="a script")
    assert row.get_by_role("button", name="Revoke").is_visible()
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert row.get_by_role("button", name="Revoke").bounding_box()["x"] + 10 < width


def test_the_current_team_badge_stays_on_one_line_on_a_phone(phone_page):
    page = phone_page
    page.goto("/teams/")
    badge = page.locator(".badge", has_text="Current")
    line = float(badge.evaluate("(el) => parseFloat(getComputedStyle(el).lineHeight)"))
    assert badge.bounding_box()["height"] < 1.5 * line


def test_a_refused_form_brings_its_first_error_into_view(page, user, sim):
    from playwright.sync_api import expect

    log_in(page, user)
    team_url = create_team(page, "Policy team")
    page.goto(team_url + "policy/")
    field = page.get_by_label("Messages per minute per person")
    field.fill("-1")
    page.get_by_role("button", name="Save policy").click()
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    expect(field).to_be_in_viewport()
    expect(page.get_by_text("Ensure this value is greater than or equal to 1.")).to_be_in_viewport()


def test_the_audit_trail_keeps_words_whole_on_a_phone(phone_page):
    page = phone_page
    team_url = create_team(page, "Audit team")
    page.goto(team_url + "audit/")
    what = page.locator("td", has_text="Team created")
    line = float(what.evaluate("(el) => parseFloat(getComputedStyle(el).lineHeight)"))
    assert what.bounding_box()["height"] < 1.5 * line


def test_the_usage_tables_show_every_column_on_a_phone(phone_page, app_server, user):
    page = phone_page
    team_url = create_team(page, "Usage phone team")
    team = int(re.search(r"/teams/(\d+)/", team_url).group(1))
    app_server.run_python(USAGE_SEED.format(team=team, username=user.username))
    app_server.run_python(MEMBER_LIMIT_SEED.format(team=team))
    page.goto(team_url + "usage/")
    for region in page.locator(".table-scroll").all():
        assert region.evaluate("(el) => el.scrollWidth <= el.clientWidth"), region.get_attribute(
            "aria-label"
        )
    for shown in ("10,000", "990,000"):  # the total, and what is left of the person's limit
        cell = page.get_by_role("region", name="Person usage").get_by_text(shown, exact=True)
        box = cell.bounding_box()
        assert box["x"] + box["width"] <= page.evaluate("document.documentElement.clientWidth")


def test_moving_a_prompt_from_the_keyboard_keeps_the_focus_on_its_move_button(page, user, sim):
    log_in(page, user)
    team_url = create_team(page, "Ordered team")
    for name in ["Alpha", "Beta", "Gamma"]:
        page.goto(team_url + "prompts/")
        page.get_by_label("Name").fill(name)
        page.get_by_label("Content").fill(f"Be {name}.")
        page.get_by_role("button", name="Add prompt").click()
    page.goto(team_url + "prompts/")
    page.get_by_role("button", name="Move Gamma up").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".prompt-item h3")).to_have_text(["Alpha", "Gamma", "Beta"])
    expect(page.get_by_role("button", name="Move Gamma up")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".prompt-item h3")).to_have_text(["Gamma", "Alpha", "Beta"])
    # First now, it has no Move up: its Move down takes the focus.
    expect(page.get_by_role("button", name="Move Gamma down")).to_be_focused()


def test_the_audit_trail_does_not_call_the_viewers_local_times_utc(browser, app_server, user, sim):
    context = browser.new_context(base_url=app_server.url, timezone_id="Asia/Tokyo", locale="en-US")
    try:
        page = context.new_page()
        log_in(page, user)
        team_url = create_team(page, "Time zone team")
        page.goto(team_url + "audit/")
        created = page.locator("tbody tr").filter(has_text="Team created").locator("td").first
        expect(created).to_contain_text("GMT+9")
        expect(page.get_by_role("columnheader").first).to_have_text("When")
    finally:
        context.close()
