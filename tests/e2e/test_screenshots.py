"""The README's screenshots, taken in real Chromium from a seeded team.

`python scripts/screenshots.py` runs this test with SCREENSHOTS_DIR=docs/screenshots to
refresh them; in the normal suite they go to a temporary directory (or $BROWSER_SCREENSHOTS),
so every run still checks that the main screens render without errors at both sizes.
"""

import os
import struct
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import BrowserUser, ChatPage, json_from, log_in
from tests.browser.conftest import DESKTOP, MODEL, PHONE
from tests.e2e.journeys import assert_clean, expect_socket_open, new_context, watched_page

pytestmark = pytest.mark.browser

QUESTION = "How do I count the rows in a CSV file with Python?"
# A team with people, prompts, a month of usage and some history in Ada's sidebar.
SEED = """
import json, random
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from chatapp.chat.models import Conversation, Message
from chatapp.teams import actions
from chatapp.teams.models import Membership, Role, TeamUsage

User = get_user_model()
ada = User.objects.get(username="ada")
team = actions.create_team(ada, "Llama Labs")
people = [ada]
for name, role in [("grace", Role.ADMIN), ("linus", Role.MEMBER), ("mei", Role.MEMBER)]:
    person = User.objects.create(username=name, email=f"{name}@example.com")
    Membership.objects.create(team=team, user=person, role=role)
    people.append(person)
prompts = [
    ("Code reviewer", "You review Python and JavaScript. Point out bugs first, then style.",
     True, False),
    ("Support replies", "Draft friendly, short replies to customer emails. Never promise dates.",
     False, True),
    ("Haiku poet", "Answer every question as a haiku about llamas.", False, False),
]
for name, content, is_default, locked in prompts:
    actions.save_prompt(ada, team, name=name, content=content, is_default=is_default,
                        locked=locked)
for title in ["Quarterly report outline", "Regex for ISO dates", "Llama facts for the newsletter",
              "Postgres index advice", "Release notes draft"]:
    conversation = Conversation.objects.create(team=team, owner=ada, title=title, model=MODEL)
    Message.objects.create(conversation=conversation, role="user", content=title)
    Message.objects.create(conversation=conversation, role="assistant", content="Sure.")
today = timezone.now().date()
rng = random.Random(8)
for offset in range(today.day - 1, 0, -1):
    day = today - timedelta(days=offset)
    for weight, person in zip([1.0, 0.7, 0.45, 0.3], people):
        for model, share in [(MODEL, 1.0), ("Llama-3.3-70B-Instruct", 0.4)]:
            scale = weight * share * (0.4 if day.weekday() >= 5 else 1.0)
            TeamUsage.objects.create(
                team=team, user=person, model=model, day=day,
                prompt_tokens=int(rng.uniform(2000, 9000) * scale),
                completion_tokens=int(rng.uniform(3000, 14000) * scale),
                requests=int(rng.uniform(8, 30) * scale) + 1,
            )
print(json.dumps({"team": team.pk}))
"""


@pytest.fixture
def shots_dir(screenshot_dir) -> Path:
    path = Path(os.environ.get("SCREENSHOTS_DIR") or screenshot_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def team_site(app_server) -> dict:
    app_server.create_user("ada")
    return json_from(app_server.run_python(f"MODEL = {MODEL!r}\n" + SEED))


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def snap(page, directory: Path, name: str) -> Path:
    """A screenshot once nothing moves and no caret blinks."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.wait_for_function(
        "document.getAnimations().every(a => a.playState !== 'running')"
        " && document.fonts.status === 'loaded'"
    )
    path = directory / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def test_screenshots_of_the_main_screens(browser, app_server, team_site, sim, shots_dir):
    ada = BrowserUser("ada")
    team_url = f"/teams/{team_site['team']}/"
    taken = []
    desktop = new_context(browser, app_server.url, reduced_motion="reduce")
    phone = new_context(browser, app_server.url, viewport=PHONE, reduced_motion="reduce")
    try:
        page, watch = watched_page(desktop, app_server.url)
        log_in(page, ada)
        chat = ChatPage(page)
        picker = page.get_by_label("System prompt")
        expect(picker.locator("option:checked")).to_have_text("Code reviewer")  # the default
        chat.send(QUESTION)
        chat.wait_for_status("complete")
        conversation_url = page.url
        taken.append(snap(page, shots_dir, "chat-light"))
        page.get_by_role("button", name="Dark theme").click()
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        taken.append(snap(page, shots_dir, "chat-dark"))
        page.get_by_role("button", name="Dark theme").click()
        expect(page.locator("html")).to_have_attribute("data-theme", "light")

        page.goto("/settings/")
        page.get_by_label("Model").select_option("Llama-3.3-70B-Instruct")
        page.get_by_label("Temperature").fill("0.4")
        page.get_by_label("Max tokens").fill("1024")
        page.get_by_role("button", name="Save settings").click()
        expect(page.get_by_text("Settings saved.")).to_be_visible()
        taken.append(snap(page, shots_dir, "settings"))
        page.goto(team_url + "prompts/")
        expect(page.locator(".prompt-item")).to_have_count(3)
        taken.append(snap(page, shots_dir, "team-prompts"))
        page.goto(team_url + "members/")
        expect(page.get_by_role("row").filter(has_text="grace")).to_have_count(1)
        taken.append(snap(page, shots_dir, "team-members"))
        page.goto(team_url + "usage/")
        expect(page.locator(".bar-prompt").first).to_be_attached()
        taken.append(snap(page, shots_dir, "usage"))
        assert_clean(watch)

        mobile, mobile_watch = watched_page(phone, app_server.url)
        log_in(mobile, ada)
        mobile.goto(conversation_url)
        expect_socket_open(mobile)
        ChatPage(mobile).wait_for_status("complete")
        mobile.get_by_role("button", name="Open conversations").click()
        expect(mobile.get_by_role("complementary", name="Conversations")).to_be_in_viewport()
        taken.append(snap(mobile, shots_dir, "phone-drawer"))
        mobile.goto(team_url + "members/")
        expect(mobile.get_by_role("row").filter(has_text="grace")).to_have_count(1)
        taken.append(snap(mobile, shots_dir, "phone-members"))
        assert_clean(mobile_watch)
    finally:
        desktop.close()
        phone.close()
    for path in taken:
        expected = PHONE if path.stem.startswith("phone") else DESKTOP
        assert png_size(path) == (expected["width"], expected["height"]), path.name
