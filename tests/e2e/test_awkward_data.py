"""Real, awkward data on every page: names without a space in them, a long conversation title,
an answer with a wide table, questions and answers in Arabic and Hebrew. Nothing pushes a page
sideways, every button stays in view, and right-to-left text reads right to left."""

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import BrowserUser, json_from, log_in
from tests.browser.conftest import DESKTOP, MODEL, PHONE
from tests.e2e.journeys import assert_clean, new_context, watched_page
from tests.e2e.test_phone_pages import overflow
from tests.support.polling import wait_for

pytestmark = pytest.mark.browser

LONG_TEAM = "Internationaldevelopmentandplatformengineeringresearchgroup_EMEA_APAC"
LONG_TITLE = "Quarterly_planning_" + "notes" * 30
ARABIC = "مرحبا! هذا سؤال عن الإصدار Python 3.11 من فضلك."
HEBREW = "שלום עולם, זו תשובה בעברית על Python 3.11."
WIDE_TABLE = "| " + " | ".join(f"column_heading_{n}" for n in range(14)) + " |\n"
TOOL = "look_up_the_customer_record_by_its_identifier_in_the_crm"
WIDE_TABLE += "|" + "---|" * 14 + "\n| " + " | ".join(f"value_{n}" for n in range(14)) + " |\n"

# A team with a long one-word name; a teammate, API keys and a prompt named without spaces; a
# conversation with a long title, a tool call, a wide table and right-to-left text, shared
# with the team and read by a site admin twice, for long reasons; an invitation from another team.
SEED = f"""
import json
from django.contrib.auth import get_user_model
from chatapp.chat.actions.admin_access import grant_read_access
from chatapp.chat.actions.sharing import share_conversation
from chatapp.chat.models import Conversation, Message
from chatapp.teams import actions
from chatapp.teams.models import Membership, Role

User = get_user_model()
me = User.objects.get(username=USERNAME)
User.objects.filter(pk=me.pk).update(is_superuser=True, is_staff=True)
me.refresh_from_db()
team = actions.create_team(me, {LONG_TEAM!r})
mate = User.objects.create(
    username=USERNAME + "_bartholomew_fitzgerald_worthington_smythe_the_third_of_westminster")
Membership.objects.create(team=team, user=mate, role=Role.ADMIN)
actions.create_api_key(me, team, "laptop_" + "k" * 56)
actions.save_prompt(me, team, name="Code_reviewer_for_" + "team" * 15, content="Be brief.")
actions.create_api_key(mate, team, "build_server_" + "q" * 50)
chat = Conversation.objects.create(team=team, owner=me, title={LONG_TITLE!r}, model=MODEL)
question = Message.objects.create(conversation=chat, role="user", content={ARABIC!r})
answer = Message.objects.create(conversation=chat, role="assistant", parent=question,
                                status="complete", model=MODEL,
                                content={HEBREW!r} + "\\n\\n" + {WIDE_TABLE!r},
                                tool_calls=[{{"id": "call_1", "name": {TOOL!r}, "arguments": "{{}}",
                                              "status": "done", "content": "{{}}",
                                              "is_error": False, "round": 0, "offset": 0,
                                              "elapsed": 1.5}}])
chat.active_leaf = answer
chat.save()
share = share_conversation(me, chat, "team")
grant_read_access(me, chat, "Reason_" + "r" * 200, 15)
grant_read_access(me, chat, "An abuse report names this conversation. " * 24, 60)
other = actions.create_team(mate, "Other_" + "o" * 90)
invitation = actions.invite(mate, other)
print(json.dumps({{"team": team.pk, "chat": chat.pk, "share": share.token,
                  "invitation": invitation.token}}))
"""


@pytest.fixture
def awkward(app_server, user):
    names = f"USERNAME = {user.username!r}\nMODEL = {MODEL!r}\n"
    return json_from(app_server.run_python(names + SEED))


def signed_in(browser, app_server, user, viewport):
    context = new_context(browser, app_server.url, viewport=viewport, has_touch=viewport == PHONE)
    page, watch = watched_page(context, app_server.url)
    log_in(page, user)
    return context, page, watch


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_long_names_leave_every_revoke_button_in_view(
    browser, app_server, user, sim, awkward, viewport
):
    context, page, watch = signed_in(browser, app_server, user, viewport)
    try:
        out_of_view = {}
        for path in ["/settings/", "/settings/shares/", f"/teams/{awkward['team']}/members/"]:
            page.goto(path)
            buttons = page.get_by_role("button", name="Revoke", exact=True)
            expect(buttons.first).to_be_visible()
            for number, button in enumerate(buttons.all()):
                box = button.bounding_box()
                if box["x"] + box["width"] > viewport["width"]:
                    out_of_view[f"{path} #{number}"] = box["x"] + box["width"]
        assert out_of_view == {}
        assert_clean(watch)
    finally:
        context.close()


def test_long_names_without_spaces_fit_a_phone(browser, app_server, user, sim, awkward):
    team = f"/teams/{awkward['team']}/"
    paths = [
        "/settings/",
        "/teams/",
        *(team + section for section in ["", "members/", "prompts/", "usage/", "audit/"]),
        f"/c/{awkward['chat']}/share/",
        f"/site/conversations/{awkward['chat']}/access/",
        f"/invite/{awkward['invitation']}/",
    ]
    context, page, watch = signed_in(browser, app_server, user, PHONE)
    try:
        too_wide = {}
        for path in paths:
            page.goto(path)
            extra, culprits = overflow(page)
            if extra > 0:
                too_wide[path] = (extra, culprits)
        assert too_wide == {}
        assert_clean(watch)
    finally:
        context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_a_wide_table_in_a_shared_answer_scrolls_in_its_own_box(
    browser, app_server, user, sim, awkward, viewport
):
    context, page, watch = signed_in(browser, app_server, user, viewport)
    try:
        page.goto(f"/s/{awkward['share']}/")
        table = page.get_by_role("region", name="Table")
        expect(table.get_by_role("columnheader", name="column_heading_13")).to_be_attached()
        assert table.evaluate("(box) => box.scrollWidth > box.clientWidth")  # it scrolls
        assert overflow(page)[0] == 0  # the page does not
        table.focus()  # a keyboard scrolls it too
        page.keyboard.press("ArrowRight")
        wait_for(lambda: table.evaluate("(box) => box.scrollLeft") > 0, "the arrow key")
        assert_clean(watch)
    finally:
        context.close()


DIRECTION = "(element) => getComputedStyle(element).direction"


def test_right_to_left_text_reads_right_to_left_in_the_chat_and_a_share(
    browser, app_server, user, sim, awkward
):
    context, page, watch = signed_in(browser, app_server, user, PHONE)
    try:
        page.goto(f"/c/{awkward['chat']}/")
        question = page.locator(".message-user .bubble").filter(has_text="مرحبا")
        answer = page.locator(".message-assistant .markdown")
        expect(answer.get_by_text("שלום עולם")).to_be_visible()
        directions = {
            "question": question.evaluate(DIRECTION),
            "answer": answer.get_by_text("שלום עולם").evaluate(DIRECTION),
            "table header": answer.get_by_role("columnheader").first.evaluate(DIRECTION),
            "message box": page.get_by_label("Message", exact=True).evaluate(DIRECTION),
        }
        assert directions == {
            "question": "rtl",
            "answer": "rtl",
            "table header": "ltr",  # English in the same answer stays left to right
            "message box": "ltr",  # until Arabic is typed in it
        }
        page.get_by_label("Message", exact=True).fill("سؤال جديد")
        assert page.get_by_label("Message", exact=True).evaluate(DIRECTION) == "rtl"

        page.goto(f"/s/{awkward['share']}/")
        expect(page.get_by_text("שלום עולם")).to_be_visible()
        assert page.locator(".shared-question").evaluate(DIRECTION) == "rtl"
        assert page.get_by_text("שלום עולם").evaluate(DIRECTION) == "rtl"
        assert page.get_by_role("columnheader").first.evaluate(DIRECTION) == "ltr"
        assert_clean(watch)
    finally:
        context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_nothing_in_a_chat_with_long_names_runs_past_the_edge(
    browser, app_server, user, sim, awkward, viewport
):
    context, page, watch = signed_in(browser, app_server, user, viewport)
    try:
        page.goto(f"/c/{awkward['chat']}/")
        notices = page.get_by_role("note").filter(has_text="was given read access")
        expect(notices).to_have_count(2)
        expect(page.locator(".tool-call-name")).to_have_text(TOOL)
        extra, culprits = overflow(page)
        assert extra == 0, culprits
        # Nor inside the conversation, which would clip it or scroll sideways.
        messages = page.locator(".messages")
        assert messages.evaluate("(box) => box.scrollWidth <= box.clientWidth")
        assert_clean(watch)
    finally:
        context.close()


def test_site_admin_notices_leave_room_for_the_conversation_on_a_phone(
    browser, app_server, user, sim, awkward
):
    """Two grants, one with a reason of a thousand characters: the notices scroll in a box of
    their own, and the conversation keeps most of the screen."""
    context, page, watch = signed_in(browser, app_server, user, PHONE)
    try:
        page.goto(f"/c/{awkward['chat']}/")
        expect(page.get_by_role("note").filter(has_text="was given read access")).to_have_count(2)
        assert page.locator("#messages").bounding_box()["height"] >= PHONE["height"] / 3
        notices = page.get_by_role("region", name="Site admin access")
        assert notices.bounding_box()["height"] <= PHONE["height"] / 4
        assert notices.evaluate("(box) => box.scrollHeight > box.clientHeight")  # it scrolls
        notices.focus()  # a keyboard scrolls it too
        page.keyboard.press("End")
        expect(notices.get_by_role("link", name="All admin access").last).to_be_in_viewport()
        assert_clean(watch)
    finally:
        context.close()


def test_a_long_user_name_stays_whole_in_the_site_admin_header_on_a_phone(
    browser, app_server, user, sim, awkward
):
    long_name = BrowserUser(user.username + "_maximilian_alexander_schwarzenberg_hohenlohe")
    app_server.create_user(long_name.username)
    app_server.run_python(
        "from django.contrib.auth import get_user_model\n"
        f"get_user_model().objects.filter(username={long_name.username!r})"
        ".update(is_superuser=True, is_staff=True)\n"
    )
    context, page, watch = signed_in(browser, app_server, long_name, PHONE)
    try:
        page.goto("/admin/")
        name = page.locator("#user-tools strong")
        expect(name).to_have_text(long_name.username)
        box = name.bounding_box()  # centred, a name too long to fit was cut off on both sides
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert overflow(page)[0] == 0
        assert_clean(watch)
    finally:
        context.close()


def lines_of(locator) -> list[int]:
    """How many lines each element's text takes (its images aside)."""
    return locator.evaluate_all(
        """(elements) => elements.map((element) => {
            const tops = new Set();
            const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
            while (walker.nextNode()) {
                const range = document.createRange();
                range.selectNodeContents(walker.currentNode);
                for (const r of range.getClientRects()) if (r.width) tops.add(Math.round(r.top));
            }
            return tops.size;
        })"""
    )


def test_a_long_user_name_leaves_the_header_on_one_line_each_on_a_desktop(
    browser, app_server, user, sim
):
    long_name = BrowserUser(user.username + "_maximilian_alexander_schwarzenberg_hohenlohe")
    app_server.create_user(long_name.username)
    app_server.run_python(
        "from django.contrib.auth import get_user_model\n"
        f"get_user_model().objects.filter(username={long_name.username!r})"
        ".update(is_superuser=True, is_staff=True)\n"
    )
    context, page, watch = signed_in(browser, app_server, long_name, DESKTOP)
    try:
        page.goto("/settings/")
        header = page.locator(".site-header")
        expect(header.locator(".username")).to_have_text(long_name.username)
        words = header.locator(".brand, .site-nav a, .team-chip, .logout-form button")
        assert lines_of(words) == [1] * words.count()  # "Log out", not "Log" over "out"
        assert_clean(watch)
    finally:
        context.close()
