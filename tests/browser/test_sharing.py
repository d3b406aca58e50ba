"""Sharing in a real browser: the owner shares a conversation with a chosen teammate from the
chat's header, the teammate reads the snapshot (answers in Markdown, questions as typed) and
continues it in their own chats; someone from outside the team gets "not found"."""

import uuid

import pytest
from playwright.sync_api import expect

from chatapp.chat.views import SHARE_PICKER_SIZE
from tests.browser.chat_page import BrowserUser, ChatPage, json_from, log_in
from tests.browser.conftest import DESKTOP, WAIT_MS
from tests.e2e.axe import violations

pytestmark = pytest.mark.browser


def new_user(app_server) -> BrowserUser:
    username = f"user_{uuid.uuid4().hex[:10]}"
    app_server.create_user(username)
    return BrowserUser(username)


def join_team_of(app_server, owner: BrowserUser, teammate: BrowserUser) -> None:
    app_server.run_python(
        "from django.contrib.auth import get_user_model\n"
        "from chatapp.chat.models import Conversation\n"
        "from chatapp.teams.models import Membership\n"
        "User = get_user_model()\n"
        f"team = Conversation.objects.filter(owner__username='{owner.username}').first().team\n"
        f"member = User.objects.get(username='{teammate.username}')\n"
        "Membership.objects.create(team=team, user=member)\n"
        "print('{}')\n"
    )


def page_for(browser, app_server, user: BrowserUser):
    context = browser.new_context(base_url=app_server.url, viewport=DESKTOP)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    log_in(page, user)
    return context, page


def test_share_with_a_teammate_who_continues_it(
    logged_in_page, user, browser, app_server, screenshot, page_watch
):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("Explain **bold** words and `code`")
    chat.wait_for_status("complete")
    assert "short answer from the simulator" in chat.answer_content()
    answer = "short answer from the simulator"
    teammate, stranger = new_user(app_server), new_user(app_server)
    join_team_of(app_server, user, teammate)

    page.get_by_role("link", name="Share in the team").click()
    page.wait_for_url("**/share/")
    # Each group of choices is a fieldset named by its legend.
    page.get_by_role("group", name="Share with").get_by_label("Chosen members").check()
    page.get_by_role("group", name="Members").get_by_label(teammate.username).check()
    page.get_by_role("button", name="Share", exact=True).click()
    page.wait_for_url("**/settings/shares/**")
    link = page.locator(".share-link").first
    expect(link).to_contain_text("/s/")
    share_path = link.get_attribute("href")
    screenshot(page, "shares-list", full_page=True)

    # The owner keeps writing: the share does not change.
    page.goto("/")
    page.wait_for_selector("html[data-socket=open]")

    context, reader = page_for(browser, app_server, teammate)
    try:
        reader.goto(share_path)
        expect(reader.get_by_role("heading", level=1)).to_contain_text("Explain")
        question = reader.locator(".shared-user .shared-text")
        expect(question).to_have_text("Explain **bold** words and `code`")  # as typed
        expect(question.locator("strong")).to_have_count(0)
        shared_answer = reader.locator(".shared-assistant .shared-text")
        expect(shared_answer).to_contain_text(answer)
        expect(shared_answer.locator("li").first).to_contain_text("Your message has")  # Markdown
        expect(shared_answer.locator("pre code")).to_contain_text("question =")
        expect(shared_answer.locator("pre code .hljs-string").first).to_be_visible()  # coloured
        screenshot(reader, "shared-conversation", full_page=True)
        reader.get_by_role("button", name="Continue in my chats").click()
        reader.wait_for_url("**/c/*/")
        reader.wait_for_selector("html[data-socket=open]")
        copy = ChatPage(reader)
        expect(copy.last_answer()).to_contain_text(answer)
        expect(reader.locator(".message").first).to_contain_text("bold")
        screenshot(reader, "forked-conversation")
        owned = json_from(
            app_server.run_python(
                "import json\n"
                "from chatapp.chat.models import Conversation\n"
                f"print(json.dumps(list(Conversation.objects.filter(owner__username="
                f"'{teammate.username}').values_list('title', flat=True))))\n"
            )
        )
        assert len(owned) == 1 and owned[0].startswith("Explain")
    finally:
        context.close()

    context, outsider = page_for(browser, app_server, stranger)
    try:
        response = outsider.goto(share_path)
        assert response is not None and response.status == 404
    finally:
        context.close()
    assert page_watch.page_errors == [] and page_watch.offsite_requests == []


def test_the_shares_list_fits_a_phone(phone_page):
    page = phone_page
    chat = ChatPage(page)
    chat.send("Something worth sharing")
    chat.wait_for_status("complete")
    page.goto(f"/c/{chat.conversation_id()}/share/")
    page.get_by_role("button", name="Share", exact=True).click()
    page.wait_for_url("**/settings/shares/**")
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    revoke = page.get_by_role("button", name="Revoke").bounding_box()
    assert revoke["x"] + revoke["width"] <= width
    link = page.locator(".share-link")
    line = float(link.evaluate("(el) => parseFloat(getComputedStyle(el).lineHeight)"))
    assert link.bounding_box()["height"] < 3.5 * line  # wraps, but not a letter a line


def add_teammates(app_server, user, names: str) -> None:
    """Puts the people `names` (a Python expression of a list) in the team of `user`'s chat."""
    app_server.run_python(
        "from django.contrib.auth import get_user_model\n"
        "from chatapp.chat.models import Conversation\n"
        "from chatapp.teams.models import Membership\n"
        f"team = Conversation.objects.filter(owner__username='{user.username}').first().team\n"
        "User = get_user_model()\n"
        f"people = User.objects.bulk_create(User(username=name) for name in {names})\n"
        "Membership.objects.bulk_create(Membership(team=team, user=u) for u in people)\n"
        "print('{}')\n"
    )


def test_in_a_large_team_the_share_page_finds_people_by_name(browser, app_server, user):
    """A few teammates: the box filters the whole list as typed, and Enter in it sends nothing.
    Hundreds: the page lists the first SHARE_PICKER_SIZE by name, typing narrows those, and
    Enter (or Find) asks the server for the people whose name holds it, keeping those chosen;
    the boxes are picked with the keyboard; axe finds nothing."""
    context = browser.new_context(base_url=app_server.url, viewport=DESKTOP, bypass_csp=True)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, user)
    chat = ChatPage(page)
    chat.send("Something for one colleague")
    chat.wait_for_status("complete")
    tag = uuid.uuid4().hex[:6]
    share_page = f"/c/{chat.conversation_id()}/share/"
    add_teammates(app_server, user, f"['zoe_{tag}', 'zack_{tag}']")
    page.goto(share_page)
    members = page.get_by_role("group", name="Members")
    search = members.get_by_role("searchbox", name="Find people")
    expect(members.get_by_role("button", name="Find")).to_have_count(0)
    search.fill("ZOE")  # any case
    expect(members.get_by_role("checkbox", include_hidden=False)).to_have_count(1)
    expect(members.get_by_role("status")).to_have_text("1 of 2 people shown, 0 chosen.")
    search.press("Enter")  # filters; does not send the form
    expect(members.get_by_role("status")).to_have_text("1 of 2 people shown, 0 chosen.")

    add_teammates(app_server, user, f"[f'm{tag}_{{n:03}}' for n in range(300)]")
    page.goto(share_page)
    boxes = members.get_by_role("checkbox")
    expect(boxes).to_have_count(SHARE_PICKER_SIZE)  # m…_000 to m…_099
    expect(members).to_contain_text(f"The first {SHARE_PICKER_SIZE} of 302 teammates by name")
    page.get_by_role("group", name="Share with").get_by_label("Chosen members").check()
    search.fill(f"m{tag}_04")
    expect(members.get_by_role("checkbox", include_hidden=False)).to_have_count(10)
    expect(members.get_by_role("status")).to_have_text(
        f"10 of {SHARE_PICKER_SIZE} listed people shown, 0 chosen."
    )
    members.get_by_label(f"m{tag}_042").check()
    search.fill("ZOE")
    expect(members.get_by_role("checkbox", include_hidden=False)).to_have_count(1)  # the chosen
    search.press("Enter")  # finds: the page lists the chosen, then those found
    expect(boxes).to_have_count(2)
    expect(search).to_be_focused()
    expect(search).to_have_value("ZOE")
    expect(members.get_by_label(f"m{tag}_042")).to_be_checked()
    expect(
        page.get_by_role("group", name="Share with").get_by_label("Chosen members")
    ).to_be_checked()
    expect(members).to_contain_text("1 teammate with a name holding \u201cZOE\u201d")
    page.keyboard.press("Tab")
    expect(members.get_by_role("button", name="Find")).to_be_focused()
    page.keyboard.press("Tab")
    expect(members.get_by_label(f"m{tag}_042")).to_be_focused()
    page.keyboard.press("Tab")
    expect(members.get_by_label(f"zoe_{tag}")).to_be_focused()
    page.keyboard.press("Space")
    expect(members.get_by_role("status")).to_have_text("2 of 2 listed people shown, 2 chosen.")
    assert violations(page) == []
    page.get_by_role("button", name="Share", exact=True).click()
    page.wait_for_url("**/settings/shares/**")
    expect(page.locator("tbody tr").first).to_contain_text(f"zoe_{tag}, m{tag}_042")
    assert errors == []
    context.close()
