"""axe-core finds nothing on the site's pages and the chat's states, in the light and the dark
theme: every page a person or a team admin reaches, and the chat with branches, files, a tool
call waiting for approval and its dialogs open."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, json_from, log_in
from tests.browser.conftest import PHONE
from tests.browser.test_chat_attachments import drop, paste, pdf, png, wait_until_attached
from tests.e2e.axe import violations
from tests.e2e.journeys import assert_clean, new_context, watched_page

pytestmark = pytest.mark.browser

THEMES = ["light", "dark"]

# What the team pages and the chat show once a team is in use: a tool server (its tools listed,
# one asks before it runs), a JSON schema, a teammate's answer on the safety queue, a site
# admin's read access to one of the user's conversations, and another team's invitation.
SEED = """
import json
import logging
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from chatapp.chat.actions.admin_access import grant_read_access
from chatapp.chat.models import Conversation, Message
from chatapp.teams import actions
from chatapp.teams.models import JsonSchema, Membership, Role, Team
from chatapp.teams.safety import Finding
from chatapp.tools.actions import fetch_listing, store_listing
from chatapp.tools.models import ToolServer

logging.disable(logging.CRITICAL)  # the worker answers on stdout, where the site logs
User = get_user_model()
me = User.objects.get(username=USERNAME)
User.objects.filter(pk=me.pk).update(is_superuser=True, is_staff=True)
team = Team.objects.get(pk=TEAM)
server = ToolServer.objects.create(team=team, name="helpdesk", url=TOOLS_URL)
store_listing(server, async_to_sync(fetch_listing)(server.url, "", 30))
assert server.is_up, server.last_error
JsonSchema.objects.create(team=team, name="trip", schema={
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
long_text = "\\n".join(f"Rule {n}: answer in plain words." for n in range(30))  # it scrolls
prompt = actions.save_prompt(me, team, name="House style", content=long_text)
prompt = actions.save_prompt(me, team, prompt, name="House style", content=long_text + "!")

mate = User.objects.create(username=USERNAME + "_mate")
Membership.objects.create(team=team, user=mate, role=Role.MEMBER)
theirs = Conversation.objects.create(team=team, owner=mate, title="Zebras", model=MODEL)
Message.objects.create(conversation=theirs, role="user", content="Tell me about zebras")
answer = Message.objects.create(conversation=theirs, role="assistant",
                                content="A withheld answer about zebras", status="blocked")
actions.flag_message(team, mate, answer.pk, Finding("output", ("S10",), True))

mine = Conversation.objects.create(team=team, owner=me, title="Quarterly planning", model=MODEL)
Message.objects.create(conversation=mine, role="user", content="Hello")
Message.objects.create(conversation=mine, role="assistant", content="Hi **there**")
grant_read_access(me, mine, "An abuse report names this conversation", 15)

other = actions.create_team(mate, "Design crew")
invitation = actions.invite(mate, other)
logging.disable(logging.NOTSET)
print(json.dumps({"theirs": theirs.pk, "mine": mine.pk, "invitation": invitation.token,
                  "prompt": prompt.pk}))
"""


@pytest.fixture(scope="module")
def app_server(tools_app_server):
    return tools_app_server


def test_every_page_and_chat_state_has_no_axe_violations_in_either_theme(
    browser, app_server, user, sim, tool_server
):
    context = new_context(browser, app_server.url, bypass_csp=True)
    try:
        page, watch = watched_page(context, app_server.url)
        chat = ChatPage(page)
        found: dict[str, list[str]] = {}

        def audit(label: str, path: str | None = None, then=None) -> None:
            """Check the page at `path` (or this one, reloaded) in each theme, once `then` has
            brought it to the state to check."""
            for theme in THEMES:
                page.evaluate(f"localStorage.setItem('theme', {theme!r})")
                if path is None:
                    page.reload()
                else:
                    page.goto(path)
                expect(page.locator("html")).to_have_attribute("data-theme", theme)
                if then is not None:
                    then()
                if problems := violations(page):
                    found[f"{theme}: {label}"] = problems

        def answered() -> None:
            page.wait_for_selector("html[data-socket=open]")
            chat.wait_for_status("complete")

        page.goto("/accounts/login/")  # the site's storage, for the theme
        audit("login", "/accounts/login/")
        audit("signup", "/accounts/signup/")
        log_in(page, user)

        page.goto("/teams/")
        page.get_by_label("Name").fill("Accessible team")
        page.get_by_role("button", name="Create team").click()
        page.wait_for_url(re.compile(r"/teams/\d+/$"))
        team_url = page.url
        team_id = int(team_url.rstrip("/").rsplit("/", 1)[1])
        page.goto(team_url + "members/")
        page.get_by_role("button", name="Create invitation").click()
        expect(page.get_by_label("Invitation link")).to_be_visible()
        seeded = json_from(
            app_server.run_python(
                f"USERNAME = {user.username!r}\nTEAM = {team_id}\nMODEL = 'm'\n"
                f"TOOLS_URL = {tool_server.url!r}\n" + SEED
            )
        )

        # The chat, in the team just made (the current one): an answer, then a question edited
        # into a second branch (the ‹ 1/2 › switcher).
        page.goto("/")
        chat.send("Some code, please")
        chat.wait_for_status("complete")
        audit("chat with an answer", then=answered)
        question = chat.questions.last
        question.hover()
        question.get_by_role("button", name="Edit this question").click()
        question.get_by_label("Edit your question").fill("Some more code, please")
        question.get_by_label("Edit your question").press("Enter")
        expect(question.get_by_role("group", name="Version 2 of 2")).to_be_visible()
        chat.wait_for_status("complete")
        conversation = chat.conversation_id()

        def shortcuts_open() -> None:
            answered()
            page.locator("#messages").focus()
            page.keyboard.press("?")
            expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()

        def this_chat_open() -> None:
            answered()
            page.get_by_role("button", name="This chat settings").click()
            expect(page.get_by_role("dialog", name="This chat")).to_be_visible()

        audit("chat with two branches", then=answered)
        audit("chat with the keyboard shortcuts", then=shortcuts_open)
        audit("chat with its settings open", then=this_chat_open)

        # Files: sent with a question, and more waiting in the composer.
        page.get_by_role("button", name="New chat").click()
        paste(page, png())
        drop(page, pdf())
        wait_until_attached(page, 2)
        chat.send("Look at these")
        chat.wait_for_status("complete")

        pasted = []

        def files_in_the_composer() -> None:
            answered()
            if not pasted:  # a reload keeps the box's files: the next theme finds it there
                paste(page, png("next.png"))
                pasted.append("next.png")
            wait_until_attached(page, 1)

        audit("chat with files sent and attached", then=files_in_the_composer)
        page.get_by_role("button", name="Remove next.png").click()

        # A tool call waiting for the user's approval.
        page.get_by_role("button", name="New chat").click()
        chat.send("File it [sim:call=create_ticket args=title:Printer]")

        def awaiting_approval() -> None:
            page.wait_for_selector("html[data-socket=open]")
            call = chat.last_answer().locator(".tool-call")
            expect(call).to_have_attribute("data-status", "awaiting_approval")

        awaiting_approval()
        audit("chat with a tool call to approve", then=awaiting_approval)

        # Sharing it: the form, the list of shares, the shared snapshot.
        audit("share form", f"/c/{conversation}/share/")
        page.get_by_role("button", name="Share", exact=True).click()
        page.wait_for_url("**/settings/shares/**")
        share = page.locator(".share-link").first.get_attribute("href")
        audit("shares", "/settings/shares/")
        audit("a shared conversation", share)

        for label, path in [
            ("settings", "/settings/"),
            ("password change", "/accounts/password/"),
            ("admin access log", "/settings/admin-access/"),
            ("admin access request", f"/site/conversations/{seeded['theirs']}/access/"),
            ("admin access read", f"/site/conversations/{seeded['mine']}/"),
            ("site audit", "/site/audit/"),
            ("invitation", f"/invite/{seeded['invitation']}/"),
            ("teams", "/teams/"),
            ("team overview", team_url),
            ("team members", team_url + "members/"),
            ("team prompts", team_url + "prompts/"),
            ("a team prompt's versions", team_url + f"prompts/{seeded['prompt']}/"),
            ("team JSON schemas", team_url + "json-schemas/"),
            ("team tools", team_url + "tools/"),
            ("team provider", team_url + "provider/"),
            ("team policy", team_url + "policy/"),
            ("team usage", team_url + "usage/"),
            ("team safety queue", team_url + "safety/"),
            ("team audit", team_url + "audit/"),
        ]:
            audit(label, path)
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
            page.get_by_role("button", name="Open conversations").click()
            # The drawer has slid in once it is wholly on the screen.
            expect(page.locator("#sidebar")).to_be_in_viewport(ratio=1)
            found[f"{theme}, the drawer open"] = violations(page)
        assert found == {
            "light": [],
            "light, the drawer open": [],
            "dark": [],
            "dark, the drawer open": [],
        }
        assert_clean(watch)
    finally:
        context.close()
