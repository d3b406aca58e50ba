"""Download all my data: `GET /api/me/export/` answers one ZIP archive of the user's own
conversations (JSON with the whole tree, and Markdown), files, settings and API key names."""

import asyncio
import io
import json
import zipfile

import pytest
from channels.db import database_sync_to_async as db
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chatapp.accounts.models import UserSettings
from chatapp.asgi import application
from chatapp.chat import data_export
from chatapp.chat.actions.admin_access import grant_read_access
from chatapp.chat.actions.sharing import share_conversation
from chatapp.chat.models import Conversation, Message
from chatapp.identity.models import OIDCIdentity
from chatapp.teams.actions import create_api_key
from chatapp.teams.models import JsonSchema, Membership, SystemPrompt
from chatapp.uploads.actions import create_upload
from tests.conftest import client_for

SECRET = "SECRET-5be0"


def conversation(owner, team, title: str, content: str, **fields) -> Conversation:
    chat = Conversation.objects.create(team=team, owner=owner, title=title, model="m", **fields)
    Message.objects.create(conversation=chat, role="user", content=content)
    Message.objects.create(conversation=chat, role="assistant", content=f"answer to {content}")
    return chat


def download(user) -> zipfile.ZipFile:
    response = client_for(Client(), user).get("/api/me/export/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_the_archive_and_its_conversations_are_named_in_their_own_script(make_user, team):
    user = make_user("José")
    Membership.objects.create(team=team, user=user)
    chat = conversation(user, team, "Café 日本語 notes", "¿Qué tal?")
    response = client_for(Client(), user).get("/api/me/export/")
    day = timezone.now().strftime("%Y%m%d")
    assert response["Content-Disposition"] == (
        f"attachment; filename*=utf-8''llama-team-chat-jos%C3%A9-{day}.zip"
    )
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert f"conversations/{chat.pk}-café-日本語-notes.md" in archive.namelist()


def test_the_archive_holds_the_users_conversations_files_and_settings(member, owner, team):
    mine = conversation(member, team, "Taxes", "How do I **file**?")
    regenerated = Message(
        conversation=mine, parent=mine.messages.first(), role="assistant", content="second"
    )
    regenerated.explicit_parent = True
    regenerated.save()
    upload = create_upload(member, team, "notes.txt", b"my notes")
    upload.message = mine.messages.get(role="user")
    upload.save()
    UserSettings.objects.create(user=member, model="", temperature=0.0)
    _, secret = create_api_key(member, team, "laptop script")
    share_conversation(member, mine, "team")
    archive = download(member)
    names = archive.namelist()
    stem = f"conversations/{mine.pk}-taxes"
    assert {f"{stem}.json", f"{stem}.md", "account.json", f"files/{upload.pk}-notes.txt"} <= set(
        names
    )
    data = json.loads(archive.read(f"{stem}.json"))
    exported = client_for(Client(), member).get(f"/api/conversations/{mine.pk}/export?format=json")
    assert data == exported.json()  # the same as the conversation's JSON export
    assert len(data["tree"]) == 3  # every version
    assert "How do I **file**?" in archive.read(f"{stem}.md").decode()
    assert archive.read(f"files/{upload.pk}-notes.txt") == b"my notes"
    account = json.loads(archive.read("account.json"))
    assert account["account"]["username"] == "max"
    assert account["teams"] == [
        {
            "id": team.pk,
            "name": "Acme",
            "role": "member",
            "joined_at": account["teams"][0]["joined_at"],
        }
    ]
    assert account["settings"] == {
        "model": None,
        "temperature": 0.0,
        "max_tokens": None,
        "top_p": None,
    }
    assert [key["name"] for key in account["api_keys"]] == ["laptop script"]
    assert account["shares"][0]["conversation_id"] == mine.pk
    everything = b"".join(archive.read(name) for name in names)
    assert secret.encode() not in everything and secret[:12].encode() not in everything


def test_nobody_elses_data_and_no_temporary_chat_is_in_it(member, owner, outsider, team):
    conversation(member, team, "Mine", "my question")
    conversation(owner, team, f"{SECRET} owner's", f"{SECRET} the owner's question")
    conversation(outsider, team, f"{SECRET} outsider's", f"{SECRET} theirs")
    temporary = conversation(member, team, f"{SECRET} temporary", f"{SECRET} temp", temporary=True)
    kept_out = create_upload(member, team, "temp.txt", f"{SECRET} temp file".encode())
    kept_out.message = temporary.messages.get(role="user")
    kept_out.save()
    create_upload(owner, team, "owner.txt", f"{SECRET} owner's file".encode())
    create_api_key(owner, team, f"{SECRET} key")
    archive = download(member)
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert SECRET.encode() not in everything
    assert b"my question" in everything
    assert [n for n in archive.namelist() if n.startswith("conversations/")] == [
        n for n in archive.namelist() if "-mine." in n
    ]


def export_queries(user) -> int:
    with CaptureQueriesContext(connection) as queries:
        download(user)
    return len(queries.captured_queries)


def test_the_archive_reads_conversations_and_files_in_batches_not_one_by_one(member, team):
    schema = JsonSchema.objects.create(team=team, name="recipe", schema={"type": "object"})
    prompt = SystemPrompt.objects.create(
        team=team, name="Chef", content="Cook.", response_format="json_schema", json_schema=schema
    )

    def add_conversation(number: int) -> None:
        chat = conversation(member, team, f"Chat {number}", "question", system_prompt=prompt)
        other = Message(conversation=chat, parent=chat.messages.first(), role="assistant")
        other.explicit_parent = True  # another answer: a branch
        other.save()
        upload = create_upload(member, team, f"notes{number}.txt", b"my notes")
        upload.message = chat.messages.get(role="user")
        upload.save()

    add_conversation(0)
    one = export_queries(member)
    for number in range(1, 5):
        add_conversation(number)
    assert export_queries(member) == one
    # Read together, each conversation is exported as on its own.
    last = Conversation.objects.get(title="Chat 4")
    alone = client_for(Client(), member).get(f"/api/conversations/{last.pk}/export?format=json")
    together = download(member).read(f"conversations/{last.pk}-chat-4.json")
    assert json.loads(together) == json.loads(alone.content)


def test_the_company_sign_ins_linked_to_the_account_are_in_it(member, owner):
    """What identifies the person at their identity provider is their data too."""
    OIDCIdentity.objects.create(user=member, issuer="https://id.example.com", subject="u-123")
    OIDCIdentity.objects.create(user=owner, issuer="https://id.example.com", subject=SECRET)
    account = json.loads(download(member).read("account.json"))
    [linked] = account["sign_in_identities"]
    assert (linked["issuer"], linked["subject"]) == ("https://id.example.com", "u-123")
    assert linked["linked_at"] and "last_sign_in_at" in linked
    assert "last_login" in account["account"]


def test_the_site_admins_reads_of_the_users_conversations_are_in_it(
    member, owner, team, site_admin
):
    """Who read the person's conversations and why, as their settings page lists it (a
    deleted conversation's grant included); never a grant on someone else's."""
    kept = conversation(member, team, "Kept", "q")
    gone = conversation(member, team, "Gone", "q")
    grant_read_access(site_admin, kept, "Abuse report 42 about this chat", 15)
    grant_read_access(site_admin, gone, "Legal request from the regulator", 60)
    grant_read_access(site_admin, conversation(owner, team, "Theirs", "q"), f"{SECRET} case", 15)
    gone.delete()
    account = json.loads(download(member).read("account.json"))
    reads = {(g["conversation_id"], g["admin"], g["reason"]) for g in account["admin_access"]}
    assert reads == {
        (kept.pk, site_admin.get_username(), "Abuse report 42 about this chat"),
        (None, site_admin.get_username(), "Legal request from the regulator"),
    }
    assert all(g["granted_at"] and g["expires_at"] for g in account["admin_access"])
    assert SECRET not in json.dumps(account)


def test_an_empty_account_gets_an_archive_too(outsider):
    archive = download(outsider)
    assert archive.namelist() == ["account.json"]


def test_anonymous_gets_401_and_writes_405(member):
    assert Client().get("/api/me/export/").status_code == 401
    assert client_for(Client(), member).post("/api/me/export/").status_code == 405


def test_the_settings_page_offers_the_download(member):
    page = client_for(Client(), member).get("/settings/")
    assert b'href="/api/me/export/"' in page.content and b"Download all my data" in page.content


@pytest.mark.django_db(transaction=True)
async def test_the_archive_is_sent_while_it_is_built(member, team):
    """Behind a proxy's read timeout (nginx: 60 s), nothing may wait for the whole archive."""
    for number in range(data_export.BATCH):  # the first batch
        await db(conversation)(member, team, f"First {number}", "one")
    second = await db(conversation)(member, team, "Second", "two")
    session = (await db(client_for)(Client(), member)).cookies[settings.SESSION_COOKIE_NAME]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/me/export/",
        "raw_path": b"/api/me/export/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", f"sessionid={session.value}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    requested = False
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Future()  # the client stays connected
        raise AssertionError

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body") and len(sent) == 2:
            # The first bytes are out: the second conversation is not in the archive yet.
            await db(Conversation.objects.filter(pk=second.pk).update)(title="Renamed")

    await application(scope, receive, send)
    assert sent[0]["status"] == 200
    body = b"".join(message.get("body", b"") for message in sent[1:])
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert f"conversations/{second.pk}-renamed.json" in names


def test_a_failure_part_way_leaves_an_archive_no_tool_takes_for_whole(member, team, monkeypatch):
    conversation(member, team, "Kept", "a question")

    def fails(user):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(data_export, "account_data", fails)
    response = client_for(Client(), member).get("/api/me/export/")
    assert response.status_code == 200  # sent before the failure
    body = b"".join(response.streaming_content)
    assert body.startswith(b"PK\x03\x04")  # the first entries went out
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(body))
