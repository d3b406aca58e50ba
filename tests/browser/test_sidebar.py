"""The conversation sidebar: newest first, paged, searchable, rename and delete."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import (
    ChatPage,
    hold_requests,
    json_from,
    reload_holding,
    wait_until_held,
)
from tests.e2e.contrast import contrast_of
from tests.support.polling import wait_for

pytestmark = pytest.mark.browser

FILLERS = 25  # more than one page of the list (20)


@pytest.fixture
def conversations(app_server, user) -> dict[str, int]:
    """Fillers (oldest) then Gamma, Beta, Alpha (newest); Alpha's messages mention a zebra."""
    code = f"""
import json
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation, Message
from chatapp.teams.actions import ensure_personal_team
owner = get_user_model().objects.get(username={user.username!r})
team = ensure_personal_team(owner)
ids = {{}}
fillers = [f"Filler {{n:02d}}" for n in range({FILLERS})]
titles = fillers + ["Gamma ideas", "Beta notes", "Alpha plan"]
for title in titles:
    conversation = Conversation.objects.create(team=team, owner=owner, title=title, model="m")
    Message.objects.create(conversation=conversation, role="user", content=f"About {{title}}")
    ids[title] = conversation.pk
Message.objects.create(conversation_id=ids["Alpha plan"], role="assistant", content="A zebra.")
print(json.dumps(ids))
"""
    return json_from(app_server.run_python(code))


@pytest.fixture
def sidebar_page(logged_in_page, conversations):
    logged_in_page.reload()  # the fixtures were added after the page first loaded
    logged_in_page.locator(".conversation-item").first.wait_for()
    return logged_in_page


def click_row_action(page, title: str, action: str) -> None:
    """Point at a conversation, open its menu, then click Rename or Delete."""
    page.locator(".conversation-item", has=page.get_by_role("link", name=title)).hover()
    page.get_by_role("button", name=f"Actions for “{title}”").click()
    page.get_by_role("menuitem", name=action).click()


def titles(page) -> list[str]:
    return page.locator(".conversation-name").all_inner_texts()


def test_newest_first_and_more_load_on_scroll(sidebar_page):
    page = sidebar_page
    assert titles(page)[:3] == ["Alpha plan", "Beta notes", "Gamma ideas"]
    assert len(titles(page)) == 20
    page.locator(".conversation-scroll").evaluate("(el) => el.scrollTo(0, el.scrollHeight)")
    page.get_by_role("link", name="Filler 00").wait_for()
    assert len(titles(page)) == FILLERS + 3


def test_search_matches_titles_and_message_content(sidebar_page):
    page = sidebar_page
    search = page.get_by_label("Search conversations")
    status = page.get_by_role("status").and_(page.locator("#conversation-status"))
    search.fill("zebra")
    expect(page.locator(".conversation-item")).to_have_count(1)
    assert titles(page) == ["Alpha plan"]
    expect(status).to_have_text("1 conversation matches")  # said to screen readers
    expect(status).to_have_class(re.compile(r"\bvisually-hidden\b"))  # the results show it
    search.fill("filler")
    expect(status).to_have_text("More than 20 conversations match")  # a page at a time
    page.locator(".conversation-scroll").evaluate("(el) => el.scrollTo(0, el.scrollHeight)")
    expect(status).to_have_text(f"{FILLERS} conversations match")
    search.fill("beta")
    page.get_by_role("link", name="Beta notes").wait_for()
    expect(page.locator(".conversation-item")).to_have_count(1)
    search.fill("nothing like this")
    page.get_by_text("No conversations match").wait_for()
    search.fill("")
    page.get_by_role("link", name="Filler 20").wait_for()


def test_opening_a_conversation_shows_it_and_names_it_in_the_url(sidebar_page, conversations):
    page = sidebar_page
    page.get_by_role("link", name="Alpha plan").click()
    page.wait_for_url(f"**/c/{conversations['Alpha plan']}/")
    chat = ChatPage(page)
    chat.answers.first.get_by_text("A zebra.").wait_for()
    assert chat.questions.first.locator(".bubble").inner_text() == "About Alpha plan"
    assert page.locator("#conversation-title").inner_text() == "Alpha plan"
    assert page.get_by_role("link", name="Alpha plan").get_attribute("aria-current") == "page"


def test_a_conversation_loading_slowly_leaves_the_keyboard_where_the_user_put_it(
    sidebar_page, conversations
):
    """Opening a conversation hands the keyboard to the message box once it has loaded, unless
    the user went elsewhere meanwhile: a row's menu opened then stays open, its item focused."""
    page = sidebar_page
    held = []
    address = re.compile(rf"/api/conversations/{conversations['Alpha plan']}/$")
    page.route(address, lambda route: held.append(route))  # answered when let go, below
    page.get_by_role("link", name="Alpha plan").click()
    page.wait_for_url(f"**/c/{conversations['Alpha plan']}/")
    while not held:
        page.wait_for_timeout(50)
    page.get_by_role("link", name="Beta notes").focus()
    page.keyboard.press("ArrowRight")  # the row's menu, its first item focused
    rename = page.get_by_role("menuitem", name="Rename")
    expect(rename).to_be_focused()
    held[0].continue_()
    ChatPage(page).answers.first.get_by_text("A zebra.").wait_for()
    expect(rename).to_be_focused()
    page.unroute(address)

    # Nothing focused elsewhere: the message box has it, as before.
    page.keyboard.press("Escape")
    page.get_by_role("link", name="Gamma ideas").click()
    expect(ChatPage(page).input).to_be_focused()


def test_rename_with_the_keyboard_is_saved(sidebar_page, conversations):
    page = sidebar_page
    page.get_by_role("link", name="Gamma ideas").focus()
    page.keyboard.press("ArrowRight")  # the row's menu, its first item focused
    expect(page.get_by_role("menuitem", name="Rename")).to_be_focused()
    page.keyboard.press("Enter")
    title_box = page.get_by_label("New title")
    title_box.press("Control+a")
    title_box.type("Delta ideas")
    title_box.press("Enter")
    page.get_by_role("link", name="Delta ideas").wait_for()
    page.reload()
    page.get_by_role("link", name="Delta ideas").wait_for()
    stored = ChatPage(page).api(f"/api/conversations/{conversations['Gamma ideas']}/")
    assert stored["title"] == "Delta ideas"


def test_escape_cancels_a_rename(sidebar_page):
    page = sidebar_page
    click_row_action(page, "Beta notes", "Rename")
    page.get_by_label("New title").fill("Should not stick")
    page.get_by_label("New title").press("Escape")
    assert page.get_by_role("link", name="Beta notes").is_visible()
    page.reload()
    expect(page.get_by_role("link", name="Beta notes")).to_be_visible()  # the list is back
    assert "Should not stick" not in titles(page)


def test_a_rename_from_elsewhere_while_renaming_shows_and_is_not_undone(
    sidebar_page, conversations, page_watch
):
    page = sidebar_page
    page.get_by_role("link", name="Alpha plan").click()
    expect(page.locator("#conversation-title")).to_have_text("Alpha plan")
    click_row_action(page, "Alpha plan", "Rename")
    title_box = page.get_by_label("New title")
    # Meanwhile another tab renames it: every tab hears of it.
    page.evaluate(
        """async (id) => {
            const csrf = document.cookie.match(/csrftoken=([^;]+)/)[1];
            await fetch(`/api/conversations/${id}/`, {
                method: "PATCH",
                headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
                body: JSON.stringify({title: "Alpha renamed elsewhere"}),
            });
        }""",
        conversations["Alpha plan"],
    )
    expect(page.locator("#conversation-title")).to_have_text("Alpha renamed elsewhere")
    expect(title_box).to_have_value("Alpha plan")  # the box keeps what the user has there
    title_box.press("Enter")  # unchanged: nothing to save, the other rename stays
    expect(page.get_by_role("link", name="Alpha renamed elsewhere")).to_be_focused()
    page.reload()
    page.get_by_role("link", name="Alpha renamed elsewhere").wait_for()
    stored = ChatPage(page).api(f"/api/conversations/{conversations['Alpha plan']}/")
    assert stored["title"] == "Alpha renamed elsewhere"
    assert page_watch.page_errors == []


def test_delete_asks_first_then_deletes(sidebar_page, conversations):
    page = sidebar_page
    dialog = page.get_by_role("dialog")
    click_row_action(page, "Beta notes", "Delete")
    assert dialog.get_by_role("heading").inner_text() == "Delete “Beta notes”?"
    dialog.get_by_role("button", name="Cancel").click()
    assert dialog.is_hidden()
    expect(page.get_by_role("link", name="Beta notes")).to_be_focused()
    assert "Beta notes" in titles(page)
    click_row_action(page, "Beta notes", "Delete")
    dialog.get_by_role("button", name="Delete").click()
    page.get_by_role("link", name="Beta notes").wait_for(state="detached")
    page.reload()
    page.get_by_role("link", name="Alpha plan").wait_for()
    assert "Beta notes" not in titles(page)
    gone = page.evaluate(
        "async (id) => (await fetch(`/api/conversations/${id}/`)).status",
        conversations["Beta notes"],
    )
    assert gone == 404


def test_delete_removes_the_row_even_if_the_list_was_redrawn_meanwhile(sidebar_page, conversations):
    page = sidebar_page
    click_row_action(page, "Beta notes", "Delete")
    # A search result landing while the dialog is open draws the list anew.
    page.evaluate("() => window.chatPage.sidebar.reload()")
    page.get_by_role("link", name="Beta notes").wait_for()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.get_by_role("link", name="Beta notes").wait_for(state="detached")
    assert "Alpha plan" in titles(page)


def test_deleting_the_open_conversation_starts_a_new_chat(sidebar_page, conversations):
    page = sidebar_page
    page.get_by_role("link", name="Alpha plan").click()
    page.wait_for_url(f"**/c/{conversations['Alpha plan']}/")
    click_row_action(page, "Alpha plan", "Delete")
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.wait_for_url(lambda url: url.endswith("/") and "/c/" not in url)
    # The page draws on the next animation frame after the address changes.
    expect(page.locator("#conversation-title")).to_have_text("New chat")
    expect(page.locator(".message")).to_have_count(0)


def test_new_chat_button_offers_the_team_prompts(logged_in_page, app_server, user):
    code = f"""
from django.contrib.auth import get_user_model
from chatapp.teams.models import SystemPrompt
from chatapp.teams.actions import ensure_personal_team
owner = get_user_model().objects.get(username={user.username!r})
team = ensure_personal_team(owner)
SystemPrompt.objects.create(team=team, name="Pirate", content="Talk like a pirate.")
"""
    app_server.run_python(code)
    page = logged_in_page
    page.reload()
    picker = page.get_by_label("System prompt")
    assert picker.locator("option").all_inner_texts() == ["No system prompt", "Pirate"]
    picker.select_option(label="Pirate")
    chat = ChatPage(page)
    chat.send("Ahoy")
    chat.wait_for_status("complete")
    assert "with a system prompt" in chat.answer_content()
    assert picker.is_hidden()  # the prompt is fixed once the conversation exists
    page.get_by_role("button", name="New chat").click()
    page.wait_for_url(lambda url: "/c/" not in url)
    expect(picker).to_be_visible()  # the address changes first, then the page is drawn
    expect(chat.answers).to_have_count(0)


def test_a_snippet_marks_the_searched_words_and_starts_near_the_first(
    sidebar_page, conversations, app_server
):
    page = sidebar_page
    answer = " ".join(["Plain filler words here."] * 12) + " Then the Zebra crossed the road."
    app_server.run_python(
        "from chatapp.chat.models import Message\n"
        f"Message.objects.create(conversation_id={conversations['Beta notes']},"
        f" role='assistant', content={answer!r})"
    )
    # Alpha's answer holds a zebra too, but nothing crossed; a word left out is not marked.
    page.get_by_label("Search conversations").fill('ZEBRA crossed -"giraffe"')
    page.get_by_role("link", name="Beta notes").wait_for()
    snippet = page.locator(".conversation-item .conversation-snippet")
    expect(snippet).to_have_count(1)
    expect(snippet.locator("mark")).to_have_text(["Zebra", "crossed"])
    text = snippet.inner_text()
    assert text.startswith("…") and text.index("Zebra") < 40, text
    assert text.endswith("Zebra crossed the road.")  # its full stop too
    # A title holding a searched word shows it too.
    page.get_by_label("Search conversations").fill("notes")
    expect(page.locator(".conversation-item .conversation-name mark")).to_have_text(["notes"])
    expect(page.locator(".conversation-name")).to_have_text(["Beta notes"])


def test_a_word_with_combining_marks_is_marked_whole(sidebar_page, app_server):
    """Devanagari vowel signs and a letter typed with a combining accent belong to their word:
    a mark around part of it would split the letters the font joins."""
    page = sidebar_page
    title = "नमस्ते ho\u0308ren"
    app_server.run_python(
        "from chatapp.chat.models import Conversation\n"
        "c = Conversation.objects.exclude(title='').first()\n"
        f"Conversation.objects.create(team_id=c.team_id, owner_id=c.owner_id, title={title!r},"
        " model='m')"
    )
    page.get_by_label("Search conversations").fill("नमस्ते hören")
    expect(page.locator(".conversation-item .conversation-name mark")).to_have_text(
        ["नमस्ते", "ho\u0308ren"]
    )


def test_full_width_letters_and_accents_are_marked_as_the_search_found_them(
    sidebar_page, app_server
):
    page = sidebar_page
    app_server.run_python(
        "from chatapp.chat.models import Conversation\n"
        "c = Conversation.objects.exclude(title='').first()\n"
        "Conversation.objects.create(team_id=c.team_id, owner_id=c.owner_id,"
        " title='ＡＩ tiếng Việt', model='m')"
    )
    page.get_by_label("Search conversations").fill("ai viet")
    expect(page.locator(".conversation-item .conversation-name mark")).to_have_text(
        ["ＡＩ", "Việt"]
    )


def test_cjk_words_vowelled_words_and_emoji_are_marked_as_the_search_found_them(
    sidebar_page, app_server
):
    """A CJK word inside a run of characters is marked alone, an Arabic word with its vowels
    for a query without them, an emoji with its skin tone; й is not и, as search has it."""
    page = sidebar_page
    long_text = "今日はいい天気です。" * 15 + "私は日本語を勉強しています。" + "また明日。" * 15
    app_server.run_python(
        "from chatapp.chat.models import Conversation, Message\n"
        "c = Conversation.objects.exclude(title='').first()\n"
        "n = Conversation.objects.create(team_id=c.team_id, owner_id=c.owner_id,"
        " title='東京都に行く كَتَبَ 👍🏽 мой й', model='m')\n"
        f"Message.objects.create(conversation=n, role='assistant', content={long_text!r})"
    )
    search = page.get_by_label("Search conversations")
    search.fill("京都 كتب 👍 й")
    expect(page.locator(".conversation-item .conversation-name mark")).to_have_text(
        ["京都", "كَتَبَ", "👍🏽", "й"]
    )
    search.fill("日本語")
    snippet = page.locator(".conversation-item .conversation-snippet")
    expect(snippet.locator("mark")).to_have_text(["日本語"])
    assert "私は日本語を勉強" in snippet.inner_text()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_snippets_stay_readable_on_the_open_row_and_the_focused_one(
    sidebar_page, conversations, theme
):
    page = sidebar_page
    page.evaluate(f"localStorage.setItem('theme', {theme!r})")
    page.goto(f"/c/{conversations['Alpha plan']}/")
    expect(page.locator("html")).to_have_attribute("data-theme", theme)
    page.get_by_label("Search conversations").fill("About")  # in every first message
    expect(page.locator(".conversation-item .conversation-snippet").first).to_be_visible()
    page.get_by_role("link", name="Beta notes").focus()
    snippets = contrast_of(
        page,
        {
            "open": ".conversation-item:has([aria-current=page]) .conversation-snippet",
            "focused": ".conversation-item:focus-within .conversation-snippet",
        },
    )
    assert {name: found["ratio"] >= 4.5 for name, found in snippets.items()} == {
        "open": True,
        "focused": True,
    }, snippets


def test_changes_heard_while_the_list_loads_are_not_undone_by_it(logged_in_page, conversations):
    page = logged_in_page
    held = reload_holding(page, "**/api/conversations/?*")  # the list's pages
    first_page = held[0].fetch()  # read now, answered after what follows
    ChatPage(page).record_frames()
    # Another tab renames, pins and deletes, after the list was asked for: every tab hears it.
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    headers = {"X-CSRFToken": csrf}
    url = "/api/conversations/{}/".format
    page.request.patch(
        url(conversations["Alpha plan"]), data={"title": "Alpha renamed"}, headers=headers
    )
    page.request.patch(url(conversations["Gamma ideas"]), data={"pinned": True}, headers=headers)
    page.request.delete(url(conversations["Beta notes"]), headers=headers)
    heard = {"conversation.updated", "conversation.pinned", "conversation.deleted"}
    wait_for(lambda: heard <= set(ChatPage(page).frames_seen()), "the three changes")
    held[0].fulfill(response=first_page)  # the list as it was before them
    expect(page.locator(".conversation-item").first).to_be_visible()
    assert titles(page)[:2] == ["Gamma ideas", "Alpha renamed"]  # pinned first
    assert "Beta notes" not in titles(page)


def reconnect_holding_the_list(page) -> tuple:
    """Drop the chat socket; the list asked again once it is back is held, its answer read at
    once: (the held request, that answer), to give the page after what follows."""
    held = hold_requests(page, re.compile(r"/api/conversations/\?q=[^&]*&page=1"))
    page.evaluate("window.chatPage.socket.ws.close()")
    wait_until_held(page, held, "the list asked again after the reconnect")
    page.wait_for_selector("html[data-socket=open]")
    return held[0], held[0].fetch()


def made_elsewhere(app_server, user) -> None:
    """A conversation started unheard (no event): the list asked again shows it once merged."""
    app_server.run_python(f"""
from django.contrib.auth import get_user_model
from chatapp.chat.models import Conversation
from chatapp.teams.actions import ensure_personal_team
owner = get_user_model().objects.get(username={user.username!r})
Conversation.objects.create(team=ensure_personal_team(owner), owner=owner, title="Made elsewhere")
""")


def test_changes_made_here_while_the_list_is_asked_again_are_not_undone(
    sidebar_page, app_server, user, conversations
):
    page = sidebar_page
    made_elsewhere(app_server, user)
    request, answer = reconnect_holding_the_list(page)
    # This tab renames, pins and deletes after the server read the list.
    click_row_action(page, "Beta notes", "Rename")
    page.get_by_label("New title").fill("Beta renamed")
    page.get_by_label("New title").press("Enter")
    page.get_by_role("link", name="Beta renamed").wait_for()
    click_row_action(page, "Gamma ideas", "Pin")
    pinned = page.locator(".conversation-group", has=page.locator("#conversation-group-pinned"))
    expect(pinned).to_contain_text("Gamma ideas")
    click_row_action(page, "Alpha plan", "Delete")
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.get_by_role("link", name="Alpha plan").wait_for(state="detached")

    request.fulfill(response=answer)  # the list as it was before those changes
    page.get_by_role("link", name="Made elsewhere").wait_for()
    assert titles(page)[:3] == ["Gamma ideas", "Made elsewhere", "Beta renamed"]
    assert "Alpha plan" not in titles(page)
    assert "Beta notes" not in titles(page)


def test_a_new_conversation_started_while_a_short_list_is_asked_again_stays(
    logged_in_page, app_server, user
):
    page = logged_in_page
    chat = ChatPage(page)
    # The list's first load is over before the conversation is made: it must come only
    # with the list asked again.
    expect(page.locator("#conversation-status")).to_have_text("No conversations yet.")
    made_elsewhere(app_server, user)
    request, answer = reconnect_holding_the_list(page)
    chat.send("A question asked meanwhile")
    expect(chat.sidebar_items).to_have_count(1)
    request.fulfill(response=answer)  # one conversation, and no more pages
    page.get_by_role("link", name="Made elsewhere").wait_for()
    assert titles(page) == ["A question asked meanwhile", "Made elsewhere"]


def test_a_search_result_gone_meanwhile_leaves_the_results_after_a_reconnect(
    sidebar_page, app_server, conversations
):
    """The results go on past their first page; one deleted unheard (no event reached this
    tab) is missing from them when asked again, and leaves the list."""
    page = sidebar_page
    page.get_by_label("Search conversations").fill("filler")
    expect(page.locator("#conversation-status")).to_have_text("More than 20 conversations match")
    assert titles(page)[0] == "Filler 24"
    assert "Filler 20" in titles(page)
    app_server.run_python(
        f"from chatapp.chat.models import Conversation\n"
        f"Conversation.objects.filter(pk={conversations['Filler 20']}).delete()"
    )
    request, answer = reconnect_holding_the_list(page)
    request.fulfill(response=answer)
    page.get_by_role("link", name="Filler 04").wait_for()  # moved up to the first page
    assert "Filler 20" not in titles(page)
    page.locator(".conversation-scroll").evaluate("(el) => el.scrollTo(0, el.scrollHeight)")
    page.get_by_role("link", name="Filler 00").wait_for()
    assert sorted(titles(page)) == sorted(f"Filler {n:02d}" for n in range(25) if n != 20)


def test_a_title_too_long_for_its_row_and_the_header_shows_whole_on_hover(
    logged_in_page, app_server, user
):
    long_title = "Migrating the billing service to the new cluster, and all that could go wrong"
    app_server.run_python(
        "from django.contrib.auth import get_user_model\n"
        "from chatapp.chat.models import Conversation\n"
        "from chatapp.teams.actions import ensure_personal_team\n"
        f"owner = get_user_model().objects.get(username={user.username!r})\n"
        "Conversation.objects.create(team=ensure_personal_team(owner), owner=owner,"
        f" title={long_title!r}, model='m')\n"
    )
    page = logged_in_page
    page.reload()
    link = page.get_by_role("link", name=long_title)
    link.click()
    header = page.locator("#conversation-title")
    expect(header).to_have_text(long_title)
    # Both end in an ellipsis; the tooltip has the rest.
    for cut, tooltip in ((link.locator(".conversation-name"), link), (header, header)):
        assert cut.evaluate("(el) => el.scrollWidth > el.clientWidth")
        expect(tooltip).to_have_attribute("title", long_title)


def test_opening_another_conversation_cancels_the_load_of_the_last(sidebar_page):
    """Going down the list quickly: only the conversation landed on keeps loading, so it does
    not wait behind those passed on the way."""
    page = sidebar_page
    held = hold_requests(page, "**/api/conversations/*/")
    cancelled = []
    page.on("requestfailed", lambda request: cancelled.append(request.url))
    passed = ["Alpha plan", "Beta notes", "Gamma ideas", "Filler 24"]
    for title in [*passed, "Filler 23"]:
        page.get_by_role("link", name=title).click()
    wait_for(lambda: len(held) == 5 or page.wait_for_timeout(50), "five loads asked for")
    wait_for(lambda: len(cancelled) == 4 or page.wait_for_timeout(50), "four loads cancelled")
    assert cancelled == [route.request.url for route in held[:4]]
    held[-1].continue_()
    expect(page.locator("#conversation-title")).to_have_text("Filler 23")
    expect(page.locator(".message-user .bubble")).to_have_text(["About Filler 23"])
    expect(page.locator("#chat-notice")).to_be_hidden()


def test_a_conversation_written_in_moves_to_the_top(sidebar_page, conversations):
    """As after a reload: the list is by last activity, and a question is activity."""
    page = sidebar_page
    page.get_by_role("link", name="Gamma ideas").click()
    page.wait_for_url(f"**/c/{conversations['Gamma ideas']}/")
    chat = ChatPage(page)
    chat.questions.first.wait_for()
    assert titles(page)[:3] == ["Alpha plan", "Beta notes", "Gamma ideas"]
    chat.send("One more idea?")
    chat.wait_for_status("complete")
    expect(page.locator(".conversation-name").first).to_have_text("Gamma ideas")
    assert titles(page)[:3] == ["Gamma ideas", "Alpha plan", "Beta notes"]
    assert page.get_by_role("link", name="Gamma ideas").get_attribute("aria-current") == "page"


def delete_on_the_server(app_server, conversation_id: int) -> None:
    """Gone from the database, as a delete from elsewhere would leave it, and nothing said."""
    app_server.run_python(
        "from chatapp.chat.models import Conversation\n"
        f"Conversation.objects.filter(pk={conversation_id}).delete()"
    )


def test_a_delete_that_fails_leaves_the_keyboard_on_its_row(
    sidebar_page, app_server, conversations
):
    page = sidebar_page
    row = page.get_by_role("link", name="Beta notes")
    row.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowUp")  # Delete, the last item
    page.keyboard.press("Enter")
    delete_on_the_server(app_server, conversations["Beta notes"])
    page.get_by_role("dialog").get_by_role("button", name="Delete").press("Enter")
    expect(page.locator("#chat-notice")).to_contain_text("Could not delete")
    expect(row).to_be_focused()


def test_a_pin_that_fails_leaves_the_keyboard_on_its_row(sidebar_page, app_server, conversations):
    page = sidebar_page
    row = page.get_by_role("link", name="Beta notes")
    row.focus()
    delete_on_the_server(app_server, conversations["Beta notes"])
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")  # Pin
    page.keyboard.press("Enter")
    expect(page.locator("#chat-notice")).to_contain_text("Could not pin")
    expect(row).to_be_focused()


def test_leaving_a_rename_saves_it_and_focus_goes_where_it_was_moved(sidebar_page):
    page = sidebar_page
    chat = ChatPage(page)
    page.get_by_role("link", name="Beta notes").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")  # Rename
    page.get_by_label("New title").fill("Beta plans")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Beta plans")).to_be_visible()
    expect(page.get_by_role("link", name="Gamma ideas")).to_be_focused()  # the next row

    click_row_action(page, "Alpha plan", "Rename")
    page.get_by_label("New title").fill("Alpha plans")
    chat.input.click()
    expect(page.get_by_role("link", name="Alpha plans")).to_be_visible()
    expect(chat.input).to_be_focused()  # not pulled back to the row


def test_a_focused_row_deleted_in_another_tab_hands_focus_to_its_neighbour(
    sidebar_page, context, conversations
):
    page = sidebar_page
    page.get_by_role("link", name="Beta notes").focus()
    other_tab = context.new_page()
    other_tab.goto("/")
    other_tab.wait_for_selector("html[data-socket=open]")
    other_tab.evaluate(
        """async (id) => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            await fetch(`/api/conversations/${id}/`,
                        {method: "DELETE", headers: {"X-CSRFToken": token}});
        }""",
        conversations["Beta notes"],
    )
    page.get_by_role("link", name="Beta notes").wait_for(state="detached")
    expect(page.get_by_role("link", name="Gamma ideas")).to_be_focused()
