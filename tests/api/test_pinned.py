"""Pinning a conversation through PATCH /api/conversations/<id>/."""

import json

import pytest

from chatapp.chat import api
from chatapp.chat.actions import conversations
from chatapp.chat.models import Conversation

URL = "/api/conversations/"


def patch(client, conversation, body):
    return client.patch(
        f"{URL}{conversation.pk}/", json.dumps(body), content_type="application/json"
    )


def test_pin_and_unpin_keep_the_conversation_s_place_in_time(
    member_client, make_conversation, member
):
    chat = make_conversation(member, "Taxes")
    before = Conversation.objects.get(pk=chat.pk).updated_at
    response = patch(member_client, chat, {"pinned": True})
    assert response.status_code == 200
    assert response.json()["pinned"] is True
    assert response.json()["title"] == "Taxes"
    chat.refresh_from_db()
    assert (chat.pinned, chat.updated_at) == (True, before)
    assert patch(member_client, chat, {"pinned": False}).json()["pinned"] is False
    chat.refresh_from_db()
    assert chat.pinned is False


def test_rename_and_pin_in_one_request(member_client, make_conversation, member):
    chat = make_conversation(member, "Taxes")
    response = patch(member_client, chat, {"title": "Taxes 2026", "pinned": True})
    assert response.json()["title"] == "Taxes 2026"
    chat.refresh_from_db()
    assert (chat.title, chat.pinned) == ("Taxes 2026", True)


def test_list_gives_pinned_conversations_first(member_client, make_conversation, member):
    old = make_conversation(member, "Old but pinned", pinned=True)
    newer = make_conversation(member, "Newer")
    newest = make_conversation(member, "Newest")
    results = member_client.get(URL).json()["results"]
    assert [c["id"] for c in results] == [old.pk, newest.pk, newer.pk]
    assert [c["pinned"] for c in results] == [True, False, False]


def test_detail_says_whether_it_is_pinned(member_client, make_conversation, member):
    chat = make_conversation(member, "Taxes", pinned=True)
    data = member_client.get(f"{URL}{chat.pk}/").json()
    assert (data["pinned"], data["temporary"]) == (True, False)


def test_outsider_cannot_pin(outsider_client, make_conversation, member):
    chat = make_conversation(member, "Taxes")
    assert patch(outsider_client, chat, {"pinned": True}).status_code == 404
    chat.refresh_from_db()
    assert chat.pinned is False


@pytest.mark.parametrize(
    "body, field",
    [({"pinned": "yes"}, "pinned"), ({"pinned": 1}, "pinned"), ({"pinned": None}, "title")],
)
def test_bad_pinned_values_are_400_and_change_nothing(
    member_client, make_conversation, member, body, field
):
    chat = make_conversation(member, "Taxes")
    response = patch(member_client, chat, body)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    chat.refresh_from_db()
    assert (chat.title, chat.pinned) == ("Taxes", False)


@pytest.mark.parametrize("body", [{"title": "Taxes 2026"}, {"pinned": True}])
def test_a_conversation_deleted_while_an_edit_found_it_is_404(
    member_client, make_conversation, member, monkeypatch, body
):
    """Another tab deletes the conversation just after this rename or pin found it: the edit
    is told it is gone, as one sent a moment later would be, not that it was saved."""
    chat = make_conversation(member, "Taxes")
    found = api.get_conversation_for_user

    def found_then_deleted(user, conversation_id, *args):
        conversation = found(user, conversation_id, *args)
        conversations.delete_conversation(Conversation.objects.get(pk=conversation_id))
        return conversation

    monkeypatch.setattr(api, "get_conversation_for_user", found_then_deleted)
    response = patch(member_client, chat, body)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not Conversation.objects.filter(pk=chat.pk).exists()
