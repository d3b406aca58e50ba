"""Arabic and Hebrew outside the chat: names and texts people wrote read right to left on the team
pages, the settings page and the share form (each in its own direction, the page's layout
left to right), and so do the fields they are typed in."""

import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import json_from

pytestmark = pytest.mark.browser

TEAM = "فريق الدعم"
PROMPT = "עוזר תמיכה"
PROMPT_TEXT = "ענה תמיד בעברית."
KEY = "مفتاح المختبر"


def direction(locator) -> str:
    return locator.evaluate("element => getComputedStyle(element).direction")


@pytest.fixture
def rtl_team(app_server, user) -> dict:
    """`user` owns a team with an Arabic name, with a member named in Arabic, a Hebrew prompt
    and an API key named in Arabic, and a conversation to share."""
    teammate = f"سارة_{uuid.uuid4().hex[:6]}"
    app_server.create_user(teammate)
    return json_from(
        app_server.run_python(
            "import json\n"
            "from django.contrib.auth import get_user_model\n"
            "from chatapp.chat.models import Conversation\n"
            "from chatapp.teams import actions\n"
            "from chatapp.teams.models import Membership\n"
            "User = get_user_model()\n"
            f"owner = User.objects.get(username={user.username!r})\n"
            f"team = actions.create_team(owner, {TEAM!r})\n"
            f"Membership.objects.create(team=team, user=User.objects.get(username={teammate!r}))\n"
            f"actions.save_prompt(owner, team, name={PROMPT!r}, content={PROMPT_TEXT!r})\n"
            f"actions.create_api_key(owner, team, {KEY!r})\n"
            "chat = Conversation.objects.create(team=team, owner=owner, title='x', model='m')\n"
            "print(json.dumps({'team': team.pk, 'chat': chat.pk, 'teammate': "
            f"{teammate!r}}}))\n"
        )
    )


def test_names_and_texts_read_in_their_own_direction(logged_in_page, rtl_team):
    page = logged_in_page
    page.goto("/teams/")
    assert direction(page.get_by_role("link", name=TEAM)) == "rtl"
    page.goto(f"/teams/{rtl_team['team']}/")
    heading = page.get_by_role("heading", name=TEAM, level=1)
    assert direction(heading.get_by_text(TEAM)) == "rtl"
    assert direction(heading) == "ltr"  # the name reads right to left, the page stays in place
    page.goto(f"/teams/{rtl_team['team']}/members/")
    assert direction(page.get_by_text(rtl_team["teammate"], exact=True).first) == "rtl"
    assert direction(page.get_by_text(KEY, exact=True)) == "rtl"
    page.goto(f"/teams/{rtl_team['team']}/prompts/")
    assert direction(page.get_by_role("heading", name=PROMPT)) == "rtl"
    assert direction(page.get_by_text(PROMPT_TEXT)) == "rtl"
    page.goto("/settings/")
    assert direction(page.get_by_text(KEY, exact=True)) == "rtl"
    assert direction(page.get_by_text(TEAM, exact=True).first) == "rtl"
    page.goto(f"/c/{rtl_team['chat']}/share/")
    label = page.locator(".member-choices label").filter(has_text=rtl_team["teammate"])
    expect(label).to_have_count(1)
    assert direction(label.get_by_text(rtl_team["teammate"])) == "rtl"


def test_fields_take_the_direction_of_what_is_typed(logged_in_page, rtl_team):
    page = logged_in_page
    page.goto(f"/teams/{rtl_team['team']}/prompts/")
    name = page.get_by_label("Name")
    name.fill("מסכם")
    assert direction(name) == "rtl"
    name.fill("Summariser")
    assert direction(name) == "ltr"
    page.get_by_label("Content").fill("لخص النص.")
    assert direction(page.get_by_label("Content")) == "rtl"
    page.goto("/teams/")
    page.get_by_label("Name").fill(TEAM)
    assert direction(page.get_by_label("Name")) == "rtl"
    page.goto("/settings/")
    key_name = page.locator("form.key-form").get_by_label("Name")
    key_name.fill(KEY)
    assert direction(key_name) == "rtl"
