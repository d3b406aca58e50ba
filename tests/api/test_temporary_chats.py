"""Temporary chats: openable by their owner, absent from every list and export, purged."""

import io
import json
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from chatapp.chat.actions import conversations
from chatapp.chat.actions.conversations import purge_temporary
from chatapp.chat.backup import write_export
from chatapp.chat.models import Conversation, Message
from tests.conftest import client_for

URL = "/api/conversations/"


def test_temporary_chat_is_absent_from_the_list_and_search(
    member_client, member, make_conversation
):
    kept = make_conversation(member, "Kept plans", messages=[("user", "secret plans")])
    make_conversation(member, "Fleeting plans", messages=[("user", "secret plans")], temporary=True)
    listed = member_client.get(URL).json()["results"]
    found = member_client.get(URL, {"q": "plans"}).json()["results"]
    assert [c["id"] for c in listed] == [kept.pk]
    assert [c["id"] for c in found] == [kept.pk]


def test_owner_opens_a_temporary_chat_and_others_get_404(
    member_client, outsider, member, make_conversation
):
    chat = make_conversation(member, "Fleeting", temporary=True)
    outsider_client = client_for(Client(), outsider)
    mine = member_client.get(f"{URL}{chat.pk}/")
    assert mine.status_code == 200
    assert mine.json()["temporary"] is True
    assert outsider_client.get(f"{URL}{chat.pk}/").status_code == 404
    assert outsider_client.delete(f"{URL}{chat.pk}/").status_code == 404
    assert Conversation.objects.filter(pk=chat.pk).exists()


def test_temporary_chat_is_not_exported(member_client, member, make_conversation):
    chat = make_conversation(member, "Fleeting", messages=[("user", "hi")], temporary=True)
    kept = make_conversation(member, "Kept", messages=[("user", "hi")])
    assert member_client.get(f"{URL}{chat.pk}/export").status_code == 404
    assert member_client.get(f"{URL}{kept.pk}/export").status_code == 200
    written = io.StringIO()
    write_export(written.write, user=member)
    titles = [c["title"] for c in json.loads(written.getvalue())["conversations"]]
    assert titles == ["Kept"]


def test_owner_deletes_a_temporary_chat_when_leaving_it(member_client, member, make_conversation):
    chat = make_conversation(member, "Fleeting", messages=[("user", "hi")], temporary=True)
    assert member_client.delete(f"{URL}{chat.pk}/").status_code == 204
    assert not Conversation.objects.filter(pk=chat.pk).exists()
    assert not Message.objects.filter(conversation_id=chat.pk).exists()


def test_purge_temporary_deletes_only_temporary_chats_older_than_a_day(member, make_conversation):
    now = timezone.now()
    old = make_conversation(member, "Old fleeting", messages=[("user", "hi")], temporary=True)
    young = make_conversation(member, "Young fleeting", temporary=True)
    saved = make_conversation(member, "Old saved")
    Conversation.objects.filter(pk__in=[old.pk, saved.pk]).update(
        created_at=now - timedelta(hours=25)
    )
    Conversation.objects.filter(pk=young.pk).update(created_at=now - timedelta(hours=23))
    assert purge_temporary(now) == 1
    assert set(Conversation.objects.values_list("pk", flat=True)) == {young.pk, saved.pk}
    assert not Message.objects.filter(conversation_id=old.pk).exists()
    assert purge_temporary(now + timedelta(hours=2)) == 1
    assert list(Conversation.objects.values_list("pk", flat=True)) == [saved.pk]


def test_purge_temporary_leaves_a_chat_whose_answer_is_streaming(member, make_conversation):
    now = timezone.now()
    chat = make_conversation(member, "Busy", temporary=True)
    Message.objects.create(conversation=chat, role="assistant", status="streaming")
    Conversation.objects.filter(pk=chat.pk).update(created_at=now - timedelta(days=2))
    assert purge_temporary(now) == 0
    assert Conversation.objects.filter(pk=chat.pk).exists()


def test_an_answer_starting_as_the_purge_runs_keeps_the_temporary_chat(
    member, make_conversation, monkeypatch
):
    """The purge has read the expired chats when the owner sends in one of them: it stays,
    the other goes."""
    now = timezone.now()
    busy = make_conversation(member, "Busy", temporary=True)
    idle = make_conversation(member, "Idle", temporary=True)
    Conversation.objects.update(created_at=now - timedelta(days=2))
    read_expired = conversations._expired_temporary

    def expired_then_the_owner_sends(now):
        found = read_expired(now)
        Message.objects.create(conversation=busy, role="assistant", status="streaming")
        return found

    monkeypatch.setattr(conversations, "_expired_temporary", expired_then_the_owner_sends)
    assert purge_temporary(now) == 1
    assert list(Conversation.objects.values_list("pk", flat=True)) == [busy.pk]
    assert idle.pk not in Conversation.objects.values_list("pk", flat=True)
