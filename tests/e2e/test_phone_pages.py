"""Every server-rendered page fits a phone: nothing scrolls sideways at 390x844; on a desktop
the tables of a crowded team show all their columns."""

import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import BrowserUser, ChatPage, json_from, log_in
from tests.browser.conftest import DESKTOP, MODEL, PHONE
from tests.e2e.journeys import assert_clean, new_context, tab_to, watched_page
from tests.support.polling import wait_for

pytestmark = pytest.mark.browser

# A team as crowded as real ones get: long names and addresses, every role, open invitations
# (one claimed), usage, a conversation a site admin was given read access to.
SEED = """
import json
from datetime import date
from django.contrib.auth import get_user_model
from chatapp.chat.actions.admin_access import grant_read_access
from chatapp.chat.models import Conversation, Message
from chatapp.teams import actions
from chatapp.teams.models import Membership, Role, TeamUsage

User = get_user_model()
me = User.objects.get(username=USERNAME)
User.objects.filter(pk=me.pk).update(is_superuser=True, is_staff=True)
me.refresh_from_db()
team = actions.create_team(me, "Platform engineering and developer experience")
for name, role in [("margaret_hamilton_longname", Role.ADMIN), ("katherine_johnson", Role.MEMBER),
                   ("grace_brewster_murray_hopper", Role.MEMBER)]:
    person = User.objects.create(username=USERNAME + name,
                                 email=f"{name}.{USERNAME}@engineering.example.com")
    Membership.objects.create(team=team, user=person, role=role)
actions.invite(me, team, email="dorothy.vaughan@engineering.example.com", role=Role.ADMIN)
actions.invite(me, team)
for name, content in [("Code reviewer", "Review code: bugs first, then style."),
                      ("Release notes writer", "Write release notes from commit messages.")]:
    actions.save_prompt(me, team, name=name, content=content, is_default=False, locked=False)
for model in ["Llama-4-Maverick-17B-128E-Instruct-FP8", "Llama-3.3-70B-Instruct"]:
    TeamUsage.objects.create(team=team, user=me, model=model, day=date.today(),
                             prompt_tokens=123456, completion_tokens=654321, requests=42)
conversation = Conversation.objects.create(team=team, owner=me, title="Quarterly planning notes",
                                           model=MODEL)
Message.objects.create(conversation=conversation, role="user", content="Hello")
grant_read_access(me, conversation, "An abuse report names this conversation", 15)
print(json.dumps({"team": team.pk, "conversation": conversation.pk}))
"""


def overflow(page) -> tuple[int, list[str]]:
    """How far the document reaches past the viewport's right edge, in CSS pixels, and the
    innermost elements that stick out (to name them when the test fails)."""
    return page.evaluate(
        """() => {
            const edge = document.documentElement.clientWidth + 0.5;
            const sticksOut = (el) => el.getBoundingClientRect().right > edge;
            const outside = [...document.body.querySelectorAll("*")].filter(
                (el) => sticksOut(el) && ![...el.children].some(sticksOut)
            );
            const name = (el) => `${el.tagName.toLowerCase()}.${el.className}`;
            const root = document.documentElement;
            return [root.scrollWidth - root.clientWidth, outside.slice(0, 5).map(name)];
        }"""
    )


THEMES = ["light", "dark"]


def test_every_server_rendered_page_fits_a_phone(browser, app_server, user, sim, screenshot):
    seeded = json_from(
        app_server.run_python(f"USERNAME = {user.username!r}\nMODEL = {MODEL!r}\n" + SEED)
    )
    team = f"/teams/{seeded['team']}/"
    conversation = seeded["conversation"]
    paths = [
        "/settings/",
        "/accounts/password/",
        "/teams/",
        *(team + section for section in ["", "members/", "prompts/", "policy/", "provider/"]),
        team + "usage/",
        team + "audit/",
        "/site/audit/",
        "/settings/admin-access/",
        f"/site/conversations/{conversation}/access/",
        f"/site/conversations/{conversation}/",
    ]
    context = new_context(browser, app_server.url, viewport=PHONE, has_touch=True)
    try:
        page, watch = watched_page(context, app_server.url)
        log_in(page, user)
        too_wide = {}
        for theme in THEMES:
            page.evaluate(f"localStorage.setItem('theme', {theme!r})")
            for path in paths:
                page.goto(path)
                expect(page.locator("html")).to_have_attribute("data-theme", theme)
                extra, culprits = overflow(page)
                if extra > 0:
                    too_wide[f"{theme} {path}"] = (extra, culprits)
        assert too_wide == {}

        # The member list fits as it is: names, roles and their buttons, no sideways scrolling.
        page.goto(team + "members/")
        members = page.get_by_role("region", name="Members")
        assert members.evaluate("(box) => box.scrollWidth <= box.clientWidth")
        for button in members.get_by_role("button").all():
            assert button.bounding_box()["x"] + button.bounding_box()["width"] <= PHONE["width"]
        screenshot(page, "phone-members", full_page=True)
        page.goto(team + "policy/")
        screenshot(page, "phone-policy", full_page=True)
        assert_clean(watch)
    finally:
        context.close()


def test_tables_show_every_column_at_desktop_width(browser, app_server, user, sim):
    """Long addresses and names wrap: the role pickers, buttons and details stay in view."""
    seeded = json_from(
        app_server.run_python(f"USERNAME = {user.username!r}\nMODEL = {MODEL!r}\n" + SEED)
    )
    team = f"/teams/{seeded['team']}/"
    context = new_context(browser, app_server.url)
    try:
        page, watch = watched_page(context, app_server.url)
        log_in(page, user)
        too_wide = {}
        for path in [team + "members/", team + "audit/", "/site/audit/"]:
            page.goto(path)
            extra, culprits = overflow(page)
            if extra > 0:
                too_wide[path] = (extra, culprits)
            for region in page.locator(".table-scroll").all():
                if region.evaluate("(box) => box.scrollWidth > box.clientWidth"):
                    too_wide[f"{path} {region.get_attribute('aria-label')}"] = "scrolls"
        assert too_wide == {}
        page.goto(team + "members/")
        for button in page.get_by_role("button", name="Remove").all():
            box = button.bounding_box()
            assert box["x"] + box["width"] <= DESKTOP["width"]
        assert_clean(watch)
    finally:
        context.close()


def test_a_wide_code_block_on_a_phone_is_a_named_tab_stop(browser, app_server, user, sim):
    context = new_context(browser, app_server.url, viewport=PHONE, has_touch=True)
    try:
        page, watch = watched_page(context, app_server.url)
        log_in(page, user)
        chat = ChatPage(page)
        chat.send("A question with a long code line please")
        chat.wait_for_status("complete")
        code = chat.last_answer().get_by_role("group", name="Code (python)")
        assert code.evaluate("(pre) => pre.scrollWidth > pre.clientWidth")  # it scrolls
        tab_to(page, code)
        expect(code).to_be_focused()
        page.keyboard.press("ArrowRight")
        wait_for(lambda: code.evaluate("(pre) => pre.scrollLeft") > 0, "the arrow key scrolling it")
        assert_clean(watch)
    finally:
        context.close()


def test_the_tools_table_fits_a_phone(browser, tools_app_server, tool_server, sim):
    """Both checkbox columns stay in view beside a tool whose badge says it changes things."""
    server, user = tools_app_server, BrowserUser(f"user_{uuid.uuid4().hex[:10]}")
    server.create_user(user.username)
    team = server.add_tool_server(user.username, tool_server.url)
    context = new_context(browser, server.url, viewport=PHONE, has_touch=True)
    try:
        page, watch = watched_page(context, server.url)
        log_in(page, user)
        page.goto(f"/teams/{team}/tools/")
        table = page.get_by_role("region", name="Tools of helpdesk")
        expect(table.get_by_text("changes things: always asks")).to_be_visible()
        assert table.evaluate("(box) => box.scrollWidth <= box.clientWidth")
        edge = table.bounding_box()["x"] + table.bounding_box()["width"]
        for checkbox in table.get_by_role("checkbox").all():
            assert checkbox.bounding_box()["x"] + checkbox.bounding_box()["width"] <= edge
        assert_clean(watch)
    finally:
        context.close()


def test_tool_descriptions_take_the_whole_width_of_a_phone(
    browser, tools_app_server, tool_server, sim
):
    """On a phone each tool's row is a block: its description runs the width of the table, and
    its two checkboxes sit under it, each named by its column."""
    server, user = tools_app_server, BrowserUser(f"user_{uuid.uuid4().hex[:10]}")
    server.create_user(user.username)
    team = server.add_tool_server(user.username, tool_server.url)
    context = new_context(browser, server.url, viewport=PHONE, has_touch=True)
    try:
        page, watch = watched_page(context, server.url)
        log_in(page, user)
        page.goto(f"/teams/{team}/tools/")
        table = page.get_by_role("region", name="Tools of helpdesk")
        description = table.get_by_text("Today's weather in a city.")
        expect(description).to_be_visible()
        assert description.bounding_box()["width"] >= table.bounding_box()["width"] - 1
        enabled = table.get_by_role("checkbox", name="get_weather enabled")
        ask_first = table.get_by_role("checkbox", name="Ask before each call of get_weather")
        for checkbox, column in [(enabled, "Enabled"), (ask_first, "Ask first")]:
            expect(checkbox).to_be_visible()
            assert checkbox.bounding_box()["y"] > description.bounding_box()["y"]
            cell = checkbox.locator("xpath=ancestor::td")
            expect(cell).to_have_attribute("data-label", column)
            # The column's name shows before the checkbox (the heading row is hidden).
            assert cell.evaluate("(td) => getComputedStyle(td, '::before').content") != "none"
        ask_first.check()
        page.get_by_role("button", name="Save tools").click()
        expect(
            page.get_by_role("checkbox", name="Ask before each call of get_weather")
        ).to_be_checked()
        assert table.evaluate("(box) => box.scrollWidth <= box.clientWidth")
        assert_clean(watch)
    finally:
        context.close()


def test_a_tool_server_with_the_longest_name_fits_a_phone(
    browser, tools_app_server, tool_server, sim
):
    server, user = tools_app_server, BrowserUser(f"user_{uuid.uuid4().hex[:10]}")
    server.create_user(user.username)
    team = server.add_tool_server(user.username, tool_server.url)
    name = "helpdesk_and_customer_relationship_mgmt1"  # 40 characters, the most a name takes
    server.run_python(
        "from chatapp.tools.models import ToolServer\n"
        f"ToolServer.objects.filter(team_id={team}).update(name={name!r})"
    )
    context = new_context(browser, server.url, viewport=PHONE, has_touch=True)
    try:
        page, watch = watched_page(context, server.url)
        log_in(page, user)
        page.goto(f"/teams/{team}/tools/")
        expect(page.get_by_role("heading", name=name)).to_be_visible()
        assert overflow(page) == [0, []]
        assert_clean(watch)
    finally:
        context.close()


def test_roles_stay_whole_words_in_the_lists_a_member_sees_on_a_phone(
    browser, app_server, user, sim
):
    seeded = json_from(
        app_server.run_python(f"USERNAME = {user.username!r}\nMODEL = {MODEL!r}\n" + SEED)
    )
    member = BrowserUser(user.username + "katherine_johnson")
    app_server.run_python(
        "from django.contrib.auth import get_user_model\n"
        f"person = get_user_model().objects.get(username={member.username!r})\n"
        f"person.set_password({member.password!r})\n"
        "person.save()\n"
    )
    context = new_context(browser, app_server.url, viewport=PHONE, has_touch=True)
    try:
        page, watch = watched_page(context, app_server.url)
        log_in(page, member)
        lines = {}
        for path, table, column, count in [
            (f"/teams/{seeded['team']}/members/", "Members", 3, 4),  # after the hidden email
            ("/teams/", "Your teams", 2, 1),
        ]:
            page.goto(path)
            cells = f"tbody td:nth-child({column})"
            roles = page.get_by_role("region", name=table).locator(cells)
            expect(roles).to_have_count(count)
            # Each role is one line: "Member", never "Membe" over "r".
            lines[table] = roles.evaluate_all(
                """(cells) => cells.map((cell) => {
                    const range = document.createRange();
                    range.selectNodeContents(cell);
                    return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
                })"""
            )
        assert lines == {"Members": [1, 1, 1, 1], "Your teams": [1]}
        assert_clean(watch)
    finally:
        context.close()
