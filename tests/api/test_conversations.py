import json
from email.message import Message as Message_

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chatapp.chat.models import Conversation, Message
from chatapp.teams.models import Membership
from chatapp.uploads.actions import attach, create_upload
from tests.conftest import client_for
from tests.support.plans import sorts_rows
from tests.uploads import files

URL = "/api/conversations/"


def detail_url(conversation) -> str:
    return f"{URL}{conversation.pk}/"


def test_list_is_newest_first_and_only_mine(member_client, member, outsider, make_conversation):
    older = make_conversation(member, "Older")
    newer = make_conversation(member, "Newer")
    make_conversation(outsider, "Not mine")
    data = member_client.get(URL).json()
    assert [c["title"] for c in data["results"]] == ["Newer", "Older"]
    assert [c["id"] for c in data["results"]] == [newer.pk, older.pk]
    assert set(data["results"][0]) == {
        "id",
        "title",
        "pinned",
        "created_at",
        "updated_at",
        "message_id",
        "snippet",
    }
    assert data["results"][0]["message_id"] is None
    assert data["next"] is None


def test_list_paginates_with_a_constant_query_count(
    member_client, member, make_conversation, django_assert_max_num_queries
):
    for n in range(45):
        make_conversation(member, f"Chat {n}", messages=[("user", f"question {n}")])
    with django_assert_max_num_queries(3):  # session, user, one page
        first = member_client.get(URL).json()
    assert len(first["results"]) == 20
    assert first["results"][0]["title"] == "Chat 44"
    with django_assert_max_num_queries(3):
        third = member_client.get(first["next"].replace("page=2", "page=3")).json()
    assert [c["title"] for c in third["results"]] == [f"Chat {n}" for n in range(4, -1, -1)]
    assert third["next"] is None
    second = member_client.get(first["next"]).json()
    assert second["results"][0]["title"] == "Chat 24"
    assert "page=3" in second["next"]


@pytest.mark.parametrize("query", ["", "?team={team}"])
def test_a_page_is_read_in_order_from_an_index(member_client, member, team, query):
    with CaptureQueriesContext(connection) as queries:
        assert member_client.get(URL + query.format(team=team.pk)).status_code == 200
    page = queries.captured_queries[-1]["sql"]
    assert "chat_conversation" in page
    assert not sorts_rows(page)


def test_search_matches_titles_and_message_text(member_client, member, make_conversation):
    make_conversation(member, "Holiday plans", messages=[("user", "Where to go?")])
    make_conversation(member, "Cooking", messages=[("assistant", "Boil the PASTA first")])
    make_conversation(member, "Other", messages=[("user", "nothing here")])
    by_title = member_client.get(URL, {"q": "holiday"}).json()["results"]
    by_content = member_client.get(URL, {"q": "pasta"}).json()["results"]
    assert [c["title"] for c in by_title] == ["Holiday plans"]
    assert [c["title"] for c in by_content] == ["Cooking"]


def test_search_names_the_message_and_the_words_around_the_match(
    member_client, member, make_conversation
):
    match = "Then boil the PASTA for ten minutes. "
    long_answer = "Start here. " + "filler " * 30 + match + "x " * 60
    chat = make_conversation(
        member, "Cooking", messages=[("user", "How?"), ("assistant", long_answer), ("user", "ok")]
    )
    make_conversation(member, "Pasta night", messages=[("user", "nothing")])
    results = {r["title"]: r for r in member_client.get(URL, {"q": "pasta"}).json()["results"]}
    found = results["Cooking"]
    assert found["message_id"] == chat.messages.get(role="assistant").pk
    assert "boil the PASTA for ten minutes" in found["snippet"]
    assert found["snippet"].startswith("…") and found["snippet"].endswith("…")
    assert len(found["snippet"]) < 160
    assert results["Pasta night"]["message_id"] is None
    assert results["Pasta night"]["snippet"] is None


def test_search_does_not_find_other_peoples_messages(member_client, outsider, make_conversation):
    make_conversation(outsider, "Secret", messages=[("user", "pasta recipe")])
    assert member_client.get(URL, {"q": "pasta"}).json()["results"] == []


@pytest.mark.parametrize("page", ["0", "-1", "two", "1.5"])
def test_bad_page_is_400(member_client, page):
    response = member_client.get(URL, {"page": page})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "page"


def test_the_lists_address_with_its_parameters_left_blank_is_the_first_page(
    member_client, member, make_conversation
):
    mine = make_conversation(member, "Mine")
    data = member_client.get(URL + "?q=&page=&team=").json()
    assert [c["id"] for c in data["results"]] == [mine.pk]


def test_page_past_the_end_is_empty(member_client, chat):
    assert member_client.get(URL, {"page": 9}).json() == {"results": [], "next": None}


def test_detail_has_settings_and_messages(member_client, chat):
    data = member_client.get(detail_url(chat)).json()
    assert data["id"] == chat.pk
    assert data["title"] == "Tax questions"
    assert data["team_id"] == chat.team_id  # a page shows that team's files and prompts
    assert data["settings"]["model"] == "Llama-3.3-70B-Instruct"
    assert data["system_prompt"]["content"] == "Be brief."
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", "How do I file taxes?"),
        ("assistant", "Start with **form A**."),
    ]
    assert {"id", "role", "content", "status", "model", "usage", "created_at"} <= set(
        data["messages"][0]
    )


def test_outsider_gets_404_everywhere(outsider_client, chat):
    assert outsider_client.get(detail_url(chat)).status_code == 404
    assert outsider_client.delete(detail_url(chat)).status_code == 404
    response = outsider_client.patch(
        detail_url(chat), json.dumps({"title": "Mine now"}), content_type="application/json"
    )
    assert response.status_code == 404
    assert outsider_client.get(detail_url(chat) + "export?format=json").status_code == 404
    chat.refresh_from_db()
    assert chat.title == "Tax questions"


def test_missing_conversation_is_404(member_client, chat):
    assert member_client.get(f"{URL}{chat.pk + 1000}/").status_code == 404


def test_rename(member_client, chat):
    response = member_client.patch(
        detail_url(chat), json.dumps({"title": "  Taxes   2026 "}), content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["title"] == "Taxes 2026"
    chat.refresh_from_db()
    assert chat.title == "Taxes 2026"


def test_a_title_keeps_no_control_characters_or_direction_marks(member_client, chat):
    """Whoever the conversation is shared with reads the title as it was typed."""
    title = "Invoice \u202efdp.exe\u202c\tnotes\x1b[31m"
    response = member_client.patch(
        detail_url(chat), json.dumps({"title": title}), content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["title"] == "Invoice fdp.exe notes [31m"
    chat.refresh_from_db()
    assert chat.title == "Invoice fdp.exe notes [31m"


@pytest.mark.parametrize("title", ["\u200b", "\u2060\ufeff", "\u00ad", "\u0301", "\u3164"])
def test_a_title_with_nothing_to_see_is_400(member_client, chat, title):
    response = member_client.patch(
        detail_url(chat), json.dumps({"title": title}), content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "title"
    chat.refresh_from_db()
    assert chat.title == "Tax questions"


@pytest.mark.parametrize(
    "body, field",
    [
        ('{"title": ""}', "title"),
        ('{"title": 42}', "title"),
        ('{"title": "' + "x" * 201 + '"}', "title"),
        ('{"title": "ok", "owner": 1}', "owner"),
        ("{}", "title"),
        ("not json", None),
        ("[1, 2]", None),
    ],
)
def test_bad_rename_bodies_are_400_and_change_nothing(member_client, chat, body, field):
    response = member_client.patch(detail_url(chat), body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"]
    assert error.get("field") == field
    chat.refresh_from_db()
    assert chat.title == "Tax questions"


def test_delete_removes_the_conversation_and_its_messages(member_client, chat):
    assert member_client.delete(detail_url(chat)).status_code == 204
    assert not Conversation.objects.filter(pk=chat.pk).exists()
    assert not Message.objects.filter(conversation_id=chat.pk).exists()


@pytest.mark.parametrize("method", ["post", "put"])
def test_wrong_methods_are_405(member_client, chat, method):
    response = getattr(member_client, method)(detail_url(chat))
    assert response.status_code == 405
    assert "PATCH" in response["Allow"]
    assert member_client.post(URL).status_code == 405
    assert member_client.delete(detail_url(chat) + "export").status_code == 405


def test_anonymous_gets_401(client, chat):
    assert client.get(URL).status_code == 401
    assert client.get(detail_url(chat)).status_code == 401


def test_writes_need_the_csrf_token(member, chat):
    client = client_for(Client(enforce_csrf_checks=True), member)
    body = json.dumps({"title": "Renamed"})
    assert client.patch(detail_url(chat), body, content_type="application/json").status_code == 403
    assert client.delete(detail_url(chat)).status_code == 403
    chat.refresh_from_db()
    assert chat.title == "Tax questions"
    client.get("/")  # the page sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.patch(
        detail_url(chat), body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 200


def test_export_markdown(member_client, chat):
    response = member_client.get(detail_url(chat) + "export", {"format": "md"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    assert 'filename="tax-questions-' in response["Content-Disposition"]
    text = response.content.decode()
    assert text.startswith("# Tax questions")
    assert "Be brief." in text
    assert text.index("How do I file taxes?") < text.index("Start with **form A**.")


def download_name(response) -> str:
    """The file name a browser saves the download as (RFC 6266, with RFC 5987's filename*)."""
    message = Message_()
    message["Content-Disposition"] = response["Content-Disposition"]
    return message.get_filename()


@pytest.mark.parametrize("format", ["md", "json"])
def test_an_export_is_named_after_its_title_in_any_script(member_client, chat, format):
    chat.title = "Café \u202e日本語 👨\u200d👩\u200d👧 हिन्दी, Notes"
    chat.save()
    response = member_client.get(detail_url(chat) + "export", {"format": format})
    assert response["Content-Disposition"].startswith("attachment; filename*=utf-8''")
    assert download_name(response) == f"café-日本語-हिन्दी-notes-{chat.pk}.{format}"


def test_an_export_with_no_letters_in_its_title_is_named_conversation(member_client, chat):
    chat.title = "👨\u200d👩\u200d👧 🇯🇵 ?!"
    chat.save()
    response = member_client.get(detail_url(chat) + "export", {"format": "md"})
    assert response["Content-Disposition"] == f'attachment; filename="conversation-{chat.pk}.md"'


def test_export_json(member_client, chat):
    response = member_client.get(detail_url(chat) + "export", {"format": "json"})
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    data = json.loads(response.content)
    assert data["title"] == "Tax questions"
    assert [m["content"] for m in data["messages"]][-1] == "Start with **form A**."


def test_export_unknown_format_is_400(member_client, chat):
    response = member_client.get(detail_url(chat) + "export", {"format": "pdf"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "format"


def failed_chat(owner, team, code: str) -> Conversation:
    conversation = Conversation.objects.create(team=team, owner=owner, title="Failed")
    question = Message.objects.create(conversation=conversation, role="user", content="Hi")
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        parent=question,
        status="error",
        error_code=code,
        error_message="Why it failed.",
    )
    conversation.active_leaf = answer
    conversation.save()
    return conversation


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("auth_failed", False),
        ("context_too_long", False),
        ("safety_blocked", False),
        ("quota_exceeded", False),
        ("upstream_unavailable", True),
        ("rate_limited", True),
        ("internal_error", True),
    ],
)
def test_a_failed_answer_says_whether_regenerating_may_help(
    member_client, member, team, code, retryable
):
    """As its message.error said: a reloaded page offers Retry only where it may succeed."""
    data = member_client.get(detail_url(failed_chat(member, team, code))).json()
    error = data["messages"][-1]["error"]
    assert error == {
        "code": code,
        "message": "Why it failed.",
        "retryable": retryable,
        "help_url": None,
    }


def test_a_refused_key_shows_the_provider_page_to_the_teams_admins_only(owner, member, team):
    owner_client, member_client = client_for(Client(), owner), client_for(Client(), member)
    owners = failed_chat(owner, team, "auth_failed")
    error = owner_client.get(detail_url(owners)).json()["messages"][-1]["error"]
    assert error["help_url"] == f"/teams/{team.pk}/provider/"
    members = failed_chat(member, team, "auth_failed")
    error = member_client.get(detail_url(members)).json()["messages"][-1]["error"]
    assert error["help_url"] is None
    other = failed_chat(owner, team, "upstream_unavailable")
    assert owner_client.get(detail_url(other)).json()["messages"][-1]["error"]["help_url"] is None


def test_markdown_export_names_the_files_sent_with_each_question(
    member_client, member, team, make_conversation
):
    chat = make_conversation(member, "Pictures", messages=[("user", ""), ("assistant", "A cat.")])
    question = chat.messages.get(role="user")
    for name in ("cat.png", "dog.png"):
        upload = create_upload(member, team, name, files.image_bytes())
        attach([upload], question)
    text = member_client.get(detail_url(chat) + "export", {"format": "md"}).content.decode()
    assert "## You\n\nFiles: cat.png, dog.png\n" in text
    assert text.index("cat.png") < text.index("A cat.")


def test_a_code_block_left_open_ends_with_its_message_in_the_markdown_export(
    member_client, member, make_conversation
):
    """An answer cut off inside its code (Max tokens, Stop) left the fence open: every later
    turn read as part of that code. Each message's open block is closed at its end."""
    chat = make_conversation(
        member,
        "Cut",
        system_prompt_text="Answer in code.\n~~~~",
        messages=[
            ("user", "Write it"),
            ("assistant", "Here:\n\n````python\ndef f():\n    ```\n    return 1"),
            ("user", "  ```\nmy pasted code\n```` not a closing fence"),
            ("assistant", "```js\nlet done = 1;\n```"),
        ],
    )
    text = member_client.get(detail_url(chat) + "export", {"format": "md"}).content.decode()
    assert "Answer in code.\n~~~~\n~~~~\n\n## You" in text
    assert "    return 1\n````\n\n## You" in text
    assert "```` not a closing fence\n  ```\n\n## Assistant" in text
    assert "let done = 1;\n```\n" in text and "let done = 1;\n```\n```" not in text


def test_markdown_export_says_why_an_answer_failed(member_client, member, team):
    """As the page and the JSON export do: "(error)" alone leaves the reader guessing."""
    chat = failed_chat(member, team, "upstream_unavailable")
    text = member_client.get(detail_url(chat) + "export", {"format": "md"}).content.decode()
    assert "## Assistant (error)\n\n_Why it failed._\n" in text


def test_a_conversation_of_a_team_left_shows_the_settings_it_used(member_client, member, team):
    """No next message there: the team's policy of today, or the defaults of the user's next
    team, say nothing about it (the page shows it read only, with its own model)."""
    chat = Conversation.objects.create(
        team=team, owner=member, title="Kept", model="Llama-2-retired", max_tokens=777
    )
    Membership.objects.filter(team=team, user=member).delete()
    settings = member_client.get(detail_url(chat)).json()["settings"]
    assert (settings["model"], settings["max_tokens"]) == ("Llama-2-retired", 777)
