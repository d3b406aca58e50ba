"""A tab still showing a team the user was removed from says so, and stops asking for it."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from chatapp.llm import KNOWN_MODELS
from tests.browser.chat_page import BrowserUser, ChatPage, hold_requests, log_in, wait_until_held

pytestmark = pytest.mark.browser
MODEL = KNOWN_MODELS[0]
TEXT_ONLY_MODEL = "Llama-3.3-70B-Instruct"


@pytest.fixture
def herd(app_server, user):
    """A team "Herd" with a monthly budget (the composer shows its meter), owned by `boss`, with
    `user` a member of it and of their personal team; returns the boss, the team's id and the
    personal team's name."""
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


def herd_conversation(app_server, user, herd, title: str, answer: str) -> int:
    """A conversation of `user` in Herd, one question and its answer; returns its id."""
    return int(
        app_server.run_python(f"""
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation, Message
person = get_user_model().objects.get(username={user.username!r})
chat = Conversation.objects.create(team_id={herd["id"]}, owner=person, title={title!r},
    model={MODEL!r})
question = Message.objects.create(conversation=chat, role="user", content="Notes, please")
Message.objects.create(conversation=chat, role="assistant", content={answer!r}, parent=question)
print(chat.pk)
""").strip()
    )


def leave_herd(page, herd) -> None:
    """The user leaves Herd on its team page, in another tab: every tab of theirs is told."""
    tab = page.context.new_page()
    try:
        tab.goto(f"/teams/{herd['id']}/")
        tab.once("dialog", lambda dialog: dialog.accept())
        with tab.expect_navigation():
            tab.get_by_role("button", name="Leave team").click()
    finally:
        tab.close()


def delete_herd_in_the_admin_site(browser, app_server, herd) -> None:
    """A site admin deletes Herd in /admin/, in a browser of their own."""
    admin = BrowserUser(f"{herd['boss'].username}-admin")
    app_server.run_python(f"""
from django.contrib.auth import get_user_model
get_user_model().objects.create_superuser({admin.username!r}, password={admin.password!r})
""")
    context = browser.new_context(base_url=app_server.url)
    try:
        page = context.new_page()
        log_in(page, admin)
        page.goto(f"/admin/teams/team/{herd['id']}/delete/")
        with page.expect_navigation():
            page.get_by_role("button", name="Yes, I’m sure").click()
    finally:
        context.close()


def watch_api(page) -> list:
    """The API requests the page sends from now on."""
    seen: list = []
    page.on(
        "request",
        lambda request: urlsplit(request.url).path.startswith("/api/") and seen.append(request),
    )
    return seen


def settle(page) -> None:
    """A request of the test's own, sent after any the page has sent so far: once it is
    answered, the watchers have seen those."""
    page.evaluate("async () => (await fetch('/api/me/')).status")


def refused(requests) -> list[str]:
    """Those answered with an error, as "404 GET /api/settings/?team=2"."""
    statuses = [(request, request.response()) for request in requests]
    return [
        f"{response.status if response else 'unanswered'} {request.method} {request.url}"
        for request, response in statuses
        if response is None or response.status >= 400
    ]


def open_herd(page) -> None:
    """Reload (the picker lists the team joined since), then switch the page to Herd."""
    page.reload()
    page.wait_for_selector("html[data-socket=open]")
    with page.expect_navigation():  # the page opens a new chat in the team chosen
        page.get_by_label("Team", exact=True).select_option(label="Herd")
    page.wait_for_selector("html[data-socket=open]")
    expect(page.locator('.budget-meter[data-kind="team"]')).to_be_visible()


def watch_budget_requests(page) -> list:
    seen: list = []
    page.on("request", lambda request: "/api/budget/" in request.url and seen.append(request))
    return seen


def expect_team_left_notice(page, herd):
    """The notice, the message box closed and the meters gone; returns the notice's button."""
    notice = page.locator("#team-left-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("You are no longer a member of Herd.")
    go = notice.get_by_role("button", name=f"Go to {herd['personal']}")
    expect(go).to_be_visible()
    expect(page.get_by_label("Message", exact=True)).to_be_disabled()
    expect(page.locator("#former-team-notice")).to_be_hidden()  # said once, above
    expect(page.locator("#budget-meters")).to_be_hidden()  # the team's numbers are not theirs
    left = page.locator("#team-picker option", has_text="Herd (left)")
    expect(left).to_be_disabled()  # shown as the page's team, not one to switch to
    expect(page.locator(".team-chip")).to_have_text("Herd (left)")  # the footer says so too
    return go


def remove_as_owner(browser, app_server, herd, username: str) -> None:
    """The team's owner removes the user on the Members page, in a browser of their own."""
    owner = browser.new_context(base_url=app_server.url)
    try:
        page = owner.new_page()
        log_in(page, herd["boss"])
        page.goto(f"/teams/{herd['id']}/members/")
        page.once("dialog", lambda dialog: dialog.accept())
        row = page.get_by_role("row").filter(
            has=page.get_by_role("cell", name=username, exact=True)
        )
        row.get_by_role("button", name="Remove").click()
        expect(row).to_have_count(0)
    finally:
        owner.close()


def test_an_idle_tab_of_a_team_the_user_was_removed_from_says_so_and_offers_their_team(
    browser, app_server, logged_in_page, user, herd, screenshot, page_watch
):
    page = logged_in_page
    open_herd(page)
    budget_requests = watch_budget_requests(page)
    ChatPage(page).input.focus()
    remove_as_owner(browser, app_server, herd, user.username)
    go = expect_team_left_notice(page, herd)
    expect(go).to_be_focused()  # the message box it was in is disabled
    path = screenshot(page, "team-left-notice")
    print(f"screenshot: {path}")
    # An answer ending would redraw the meters: the page no longer asks for them.
    page.evaluate("window.chatPage.budget.refresh()")
    assert budget_requests == []

    chip = page.locator(".team-chip")
    expect(chip).to_have_attribute("title", "You are no longer a member of Herd")

    with page.expect_navigation():
        go.click()
    page.wait_for_selector("html[data-socket=open]")
    expect(chip).to_have_text(herd["personal"])
    expect(chip).to_have_attribute("title", "Your current team")
    expect(page.locator("#team-left-notice")).to_be_hidden()
    expect(ChatPage(page).input).to_be_enabled()
    assert page_watch.page_errors == []


def test_a_budget_refresh_refused_for_a_team_left_unannounced_brings_the_notice(
    app_server, logged_in_page, user, herd, page_watch
):
    """With no event about it (the channel layer was down), the first refused refresh tells
    the page; it then asks no more."""
    page = logged_in_page
    chat = ChatPage(page)
    open_herd(page)
    budget_requests = watch_budget_requests(page)
    held = hold_requests(page, "**/api/budget/**")
    chat.send("Count")
    wait_until_held(page, held, "the meters' refresh after the answer")
    # Before the refresh is answered, behind the app's back: no signal, so no event.
    app_server.run_python(f"""
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute(
        "DELETE FROM teams_membership WHERE team_id = %s AND user_id ="
        " (SELECT id FROM auth_user WHERE username = %s)",
        [{herd["id"]}, {user.username!r}],
    )
""")
    held[0].continue_()
    expect_team_left_notice(page, herd)
    assert [r.response().status for r in budget_requests] == [404]
    page.evaluate("window.chatPage.budget.refresh()")
    assert len(budget_requests) == 1
    assert page_watch.page_errors == []


def test_a_team_left_keeps_its_conversations_listed_to_read_and_delete(
    app_server, logged_in_page, user, herd, screenshot, page_watch
):
    """Leaving a team leaves its conversations to their author, to read, download and delete:
    the page asks its list again and keeps them, each opens read only, and deleting the one
    shown leaves a blank page that asks nothing of the team (its defaults would be refused)."""
    herd_conversation(app_server, user, herd, "Retro notes", "Went well: the demo.")
    herd_conversation(app_server, user, herd, "Budget plan", "Spend less on hay.")
    page = logged_in_page
    chat = ChatPage(page)
    open_herd(page)
    expect(chat.sidebar_items).to_have_text(["Budget plan", "Retro notes"])
    chat.sidebar_items.get_by_role("link", name="Budget plan").focus()
    requests = watch_api(page)
    with page.expect_response(lambda response: "/api/conversations/?" in response.url):
        leave_herd(page, herd)
    expect_team_left_notice(page, herd)
    expect(chat.sidebar_items).to_have_text(["Budget plan", "Retro notes"])
    # Listed anew, the rows are new: the keyboard is back on the one it was on.
    expect(chat.sidebar_items.get_by_role("link", name="Budget plan")).to_be_focused()

    chat.sidebar_items.get_by_role("link", name="Retro notes").click()
    expect(page.get_by_text("Went well: the demo.")).to_be_visible()
    expect(chat.input).to_be_disabled()
    expect(page.locator("#share-link")).to_be_hidden()
    expect(page.locator("#export-link")).to_be_visible()
    print(f"screenshot: {screenshot(page, 'team-left-list')}")

    chat.sidebar_items.get_by_role("button", name="Actions for “Retro notes”").click()
    page.get_by_role("menuitem", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(chat.sidebar_items).to_have_text(["Budget plan"])
    expect(page.locator("#conversation-title")).to_have_text("New chat")
    expect(page.locator("#team-left-notice")).to_be_visible()
    expect(chat.input).to_be_disabled()
    settle(page)
    assert refused(requests) == []
    assert not [r.url for r in requests if "/api/settings/" in r.url]
    assert page_watch.page_errors == []


def test_conversations_deleted_with_the_team_drop_out_of_its_page_list(
    browser, app_server, logged_in_page, user, herd, screenshot, page_watch
):
    """A team deleted in the admin site takes its conversations with it: the page's list shows
    none of them, rather than rows that could only answer "not found"."""
    herd_conversation(app_server, user, herd, "Retro notes", "Went well: the demo.")
    page = logged_in_page
    chat = ChatPage(page)
    open_herd(page)
    expect(chat.sidebar_items).to_have_text(["Retro notes"])
    delete_herd_in_the_admin_site(browser, app_server, herd)
    expect_team_left_notice(page, herd)
    expect(chat.sidebar_items).to_have_count(0)
    status = page.locator("#conversation-status")
    expect(status).to_have_text("You have no conversations left in this team.")
    print(f"screenshot: {screenshot(page, 'team-left-deleted')}")
    assert page_watch.page_errors == []


def test_a_conversation_open_when_its_team_is_deleted_leaves_the_page(
    browser, app_server, logged_in_page, user, herd, page_watch
):
    """It went with the team: the page leaves it, as when it is deleted in another tab,
    rather than showing text whose download could only answer "not found"."""
    herd_conversation(app_server, user, herd, "Retro notes", "Went well: the demo.")
    page = logged_in_page
    chat = ChatPage(page)
    open_herd(page)
    chat.sidebar_items.first.get_by_role("link").click()
    expect(chat.last_answer()).to_contain_text("Went well: the demo.")
    requests = watch_api(page)
    delete_herd_in_the_admin_site(browser, app_server, herd)
    expect_team_left_notice(page, herd)
    expect(chat.answers).to_have_count(0)
    expect(page.get_by_text("Went well: the demo.")).to_have_count(0)
    settle(page)
    assert refused(requests) == []
    assert page_watch.page_errors == []


def test_new_chat_on_a_page_of_a_team_left_goes_to_the_current_team(
    app_server, logged_in_page, user, herd, page_watch
):
    """A new chat cannot start in the team left: New chat goes where one can, the user's
    current team, as the notice's button does, rather than asking for the team's defaults."""
    page = logged_in_page
    open_herd(page)
    requests = watch_api(page)
    leave_herd(page, herd)
    expect_team_left_notice(page, herd)
    new_chat = page.get_by_role("button", name="New chat")
    expect(new_chat).to_have_attribute("title", f"New chat in {herd['personal']}")
    with page.expect_navigation():
        new_chat.click()
    page.wait_for_selector("html[data-socket=open]")
    expect(page.locator(".team-chip")).to_have_text(herd["personal"])
    expect(page.locator("#team-left-notice")).to_be_hidden()
    expect(ChatPage(page).input).to_be_enabled()
    settle(page)
    assert refused(requests) == []
    assert page_watch.page_errors == []


def test_at_phone_width_a_page_of_a_team_left_keeps_its_list_and_new_chat_goes_home(
    app_server, phone_page, user, herd, screenshot
):
    """A Herd conversation opened by its address shows Herd; once the user has left, the
    drawer still lists it, and the new-chat shortcut goes to their current team."""
    kept = herd_conversation(app_server, user, herd, "Retro notes", "Went well: the demo.")
    page = phone_page
    page.goto(f"/c/{kept}/")
    page.wait_for_selector("html[data-socket=open]")
    expect(page.get_by_text("Went well: the demo.")).to_be_visible()
    leave_herd(page, herd)
    expect_team_left_notice(page, herd)
    print(f"screenshot: {screenshot(page, 'team-left-phone')}")
    page.get_by_role("button", name="Open conversations").click()
    drawer = page.get_by_role("complementary", name="Conversations")
    expect(drawer.get_by_role("link", name="Retro notes")).to_be_in_viewport(ratio=1)
    expect(drawer.get_by_role("button", name="New chat")).to_be_focused()
    print(f"screenshot: {screenshot(page, 'team-left-phone-drawer')}")
    with page.expect_navigation():
        page.keyboard.press("Control+Shift+O")
    page.wait_for_selector("html[data-socket=open]")
    expect(page.locator(".team-chip")).to_have_text(herd["personal"])
    expect(ChatPage(page).input).to_be_enabled()


def test_a_page_of_a_team_left_takes_no_files(app_server, logged_in_page, user, herd, page_watch):
    """Files are stored for a chat in the page's team: once it is left, the attach button is
    disabled, and a file chosen or dropped anyway is not uploaded (it could only be refused)."""
    page = logged_in_page
    open_herd(page)
    requests = watch_api(page)
    leave_herd(page, herd)
    expect_team_left_notice(page, herd)
    expect(page.get_by_role("button", name="Attach files")).to_be_disabled()
    notes = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"Hay: 3 bales"}
    page.set_input_files("#attach-input", files=[notes])
    settle(page)
    expect(page.locator("#draft-tray")).to_be_hidden()
    assert not [r.url for r in requests if "/api/uploads/" in r.url]
    assert page_watch.page_errors == []


def test_search_on_a_page_of_a_team_left_finds_the_conversations_it_lists(
    app_server, logged_in_page, user, herd, page_watch
):
    """The search box searches the list shown: the user's conversations of the team left,
    still theirs to read; a result opens read only, at the message found."""
    herd_conversation(app_server, user, herd, "Retro notes", "Went well: the demo.")
    herd_conversation(app_server, user, herd, "Budget plan", "Spend less on hay.")
    page = logged_in_page
    chat = ChatPage(page)
    open_herd(page)
    requests = watch_api(page)
    leave_herd(page, herd)
    expect_team_left_notice(page, herd)
    page.get_by_label("Search conversations").fill("hay")
    result = chat.sidebar_items.get_by_role("link", name="Budget plan")
    expect(result).to_contain_text("Spend less on hay.")
    expect(chat.sidebar_items).to_have_count(1)
    result.click()
    expect(page.locator(".message.is-landed")).to_contain_text("Spend less on hay.")
    expect(chat.input).to_be_disabled()
    settle(page)
    assert refused(requests) == []
    assert page_watch.page_errors == []


def test_a_blank_chat_of_a_team_left_offers_nothing_to_start_one_with(
    app_server, logged_in_page, user, herd, screenshot, page_watch
):
    """No chat can start in the team left: its suggestions, the Temporary chat button, the
    system prompt, the model and "This chat" are disabled under the notice (an open "This chat"
    closes), and the blank page no longer invites a question. In the user's current
    team they are all theirs again."""
    app_server.run_python(f"""
from chatapp.teams.models import TeamPolicy
TeamPolicy.objects.filter(team_id={herd["id"]}).update(starter_suggestions=["Plan a trip"])
""")
    page = logged_in_page
    open_herd(page)
    starter = page.get_by_role("button", name="Plan a trip")
    expect(starter).to_be_enabled()
    starter = page.locator("[data-starter]", has_text="Plan a trip")  # hidden below, too
    temporary = page.get_by_role("button", name="Temporary chat")
    prompt = page.get_by_label("System prompt", exact=True)
    model = page.get_by_label("Model", exact=True)
    this_chat = page.get_by_role("button", name="This chat settings")
    saved_in = page.locator("#empty-state-saved")
    invitation = page.get_by_role("heading", name="How can Llama help?")
    controls = [starter, temporary, prompt, model, this_chat]
    expect(saved_in).to_contain_text("saved in Herd")
    temporary.click()
    expect(temporary).to_have_attribute("aria-pressed", "true")
    this_chat.click()
    expect(page.locator("#settings-panel")).to_be_visible()
    requests = watch_api(page)

    leave_herd(page, herd)
    go = expect_team_left_notice(page, herd)
    for control in controls:
        expect(control).to_be_disabled()
    expect(page.locator("#settings-panel")).to_be_hidden()
    expect(this_chat).to_have_attribute("aria-expanded", "false")
    expect(go).to_be_focused()  # the keyboard was in "This chat", now closed
    # Not pressed: no temporary chat can start here, and its notice would say one does.
    expect(temporary).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#temporary-notice")).to_be_hidden()
    expect(saved_in).to_be_hidden()
    expect(invitation).to_be_hidden()  # the notice above says what is left to do
    message = page.get_by_label("Message", exact=True)
    expect(message).to_have_attribute("placeholder", "Nothing more can be asked here")
    expect(page.locator("#composer-hint")).to_be_hidden()
    print(f"screenshot: {screenshot(page, 'team-left-blank-chat')}")
    settle(page)
    assert refused(requests) == []

    with page.expect_navigation():
        go.click()
    page.wait_for_selector("html[data-socket=open]")
    expect(page.locator("#team-left-notice")).to_be_hidden()
    for control in [temporary, prompt, model, this_chat]:
        expect(control).to_be_enabled()
    expect(saved_in).to_contain_text(f"saved in {herd['personal']}")
    expect(invitation).to_be_visible()
    expect(message).to_have_attribute("placeholder", "Message Llama…")
    expect(page.locator("#composer-hint")).to_be_visible()
    this_chat.click()
    expect(page.locator("#settings-panel")).to_be_visible()
    assert page_watch.page_errors == []


def test_a_page_of_a_team_left_says_nothing_about_images_it_could_not_take(
    app_server, logged_in_page, user, herd, page_watch
):
    """With a model that does not see images the composer says so beside the attach button;
    once the team is left no file can be attached at all, and the note goes."""
    page = logged_in_page
    open_herd(page)
    page.get_by_label("Model", exact=True).select_option(TEXT_ONLY_MODEL)
    note = page.locator("#attach-note")
    expect(note).to_have_text("This model does not see images: documents only.")
    leave_herd(page, herd)
    expect_team_left_notice(page, herd)
    expect(note).to_be_hidden()
    expect(page.get_by_role("button", name="Attach files", exact=True)).to_be_disabled()
    assert page_watch.page_errors == []
