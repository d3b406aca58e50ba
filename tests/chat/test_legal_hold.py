"""A legal hold keeps every conversation of the team: nobody deletes one (its owner, the team's
owners, an account's deletion, a site admin, the sweeps) until the team's owners lift it."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from chatapp.chat.actions.conversations import end_abandoned_temporary, purge_temporary
from chatapp.chat.models import Conversation, Message
from chatapp.teams.actions import ensure_personal_team
from chatapp.teams.models import TeamPolicy
from chatapp.uploads.actions import attach, create_upload
from chatapp.uploads.models import Upload
from tests.conftest import PASSWORD, client_for
from tests.uploads import files


def chat(team, owner, **fields) -> Conversation:
    conversation = Conversation.objects.create(
        team=team, owner=owner, model="Llama-3.3-8B-Instruct", **fields
    )
    Message.objects.create(conversation=conversation, role="user", content="Keep this")
    return conversation


def kept(conversation) -> bool:
    return Conversation.objects.filter(pk=conversation.pk).exists()


@pytest.fixture
def hold(team):
    return TeamPolicy.objects.create(team=team, legal_hold=True)


def lift(hold) -> None:
    TeamPolicy.objects.filter(pk=hold.pk).update(legal_hold=False)


def test_nobody_deletes_a_conversation_of_a_team_under_hold_until_it_is_lifted(
    owner, member, team, hold
):
    for person in (member, owner):
        conversation = chat(team, person)
        url = f"/api/conversations/{conversation.pk}/"
        refused = client_for(Client(), person).delete(url)
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["code"] == "legal_hold" and "legal hold" in error["message"]
        assert kept(conversation) and conversation.messages.exists()
    lift(hold)
    assert client_for(Client(), owner).delete(url).status_code == 204
    assert not kept(conversation)


def test_a_hold_on_another_team_does_not_keep_a_conversation(member, make_user, team):
    other = chat(team, member)
    elsewhere = make_user("ella")
    TeamPolicy.objects.create(team=ensure_personal_team(elsewhere), legal_hold=True)
    assert client_for(Client(), member).delete(f"/api/conversations/{other.pk}/").status_code == 204


def test_temporary_chats_of_a_team_under_hold_are_kept_until_it_is_lifted(member, team, hold):
    now = timezone.now()
    old = chat(team, member, temporary=True)
    left = chat(team, member, temporary=True)
    Conversation.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=2))
    assert purge_temporary(now) == 0
    assert end_abandoned_temporary(left.pk) is True  # nothing more to wait for
    assert kept(old) and kept(left)
    lift(hold)
    assert purge_temporary(now) == 1 and not kept(old)
    assert end_abandoned_temporary(left.pk) is True and not kept(left)


def test_a_member_whose_conversations_are_held_keeps_their_account(member_client, member, team):
    TeamPolicy.objects.create(team=team, legal_hold=True)
    mine = chat(team, member)
    refused = member_client.post("/settings/delete-account/", {"confirmation": PASSWORD})
    assert refused.status_code == 409
    assert "Acme is under legal hold" in refused.content.decode()
    assert get_user_model().objects.filter(pk=member.pk).exists() and kept(mine)


@pytest.mark.parametrize("bulk", [False, True])
def test_the_admin_site_deletes_neither_a_held_conversation_nor_its_owner(
    client, site_admin, member, team, hold, bulk
):
    mine = chat(team, member)
    client.force_login(site_admin)
    for model, row in (("chat/conversation", mine), ("auth/user", member)):
        url = f"/admin/{model}/{row.pk}/delete/"
        assert "Acme: under legal hold" in client.get(url).content.decode()
        if bulk:
            form = {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
            client.post(f"/admin/{model}/", form)
        else:
            client.post(url, {"post": "yes"})
        assert type(row).objects.filter(pk=row.pk).exists() and kept(mine)
    lift(hold)
    assert client.post(f"/admin/auth/user/{member.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not kept(mine)


def test_a_file_sent_in_a_conversation_under_hold_is_kept_until_it_is_lifted(
    member_client, member, team, hold
):
    conversation = chat(team, member)
    sent = create_upload(member, team, "chart.png", files.image_bytes())
    attach([sent], conversation.messages.get())
    unsent = create_upload(member, team, "draft.png", files.image_bytes())
    refused = member_client.delete(f"/api/uploads/{sent.pk}/")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "legal_hold"
    assert Upload.objects.filter(pk=sent.pk).exists()
    # One never sent is no conversation's: the hold keeps conversations.
    assert member_client.delete(f"/api/uploads/{unsent.pk}/").status_code == 204
    lift(hold)
    assert member_client.delete(f"/api/uploads/{sent.pk}/").status_code == 204


@pytest.mark.django_db(transaction=True)
async def test_a_regenerate_keeps_the_answer_it_replaces_under_hold(connect, member, team, sim):
    """Without a hold, an answer stopped before its first token gives way to its regenerate;
    under hold the record of it (model, error, tokens spent) is kept as a version beside it."""
    await TeamPolicy.objects.acreate(team=team, legal_hold=True)
    socket = await connect(member)
    ids = await socket.send_message("Think first [sim:pace ttft=30]")
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    assert (await socket.until_type("message.done", ids["message_id"]))[-1]["status"] == "stopped"
    await socket.send({"type": "chat.regenerate", "message_id": ids["message_id"]})
    created = (await socket.until_type("message.created"))[-1]
    assert created["message"]["sibling_ids"] == [ids["message_id"], created["message"]["id"]]
    assert await Message.objects.filter(pk=ids["message_id"]).aexists()
    # The new answer waits as long for its first token: stop it too.
    new_id = created["message"]["id"]
    await socket.send({"type": "chat.stop", "message_id": new_id})
    assert (await socket.until_type("message.done", new_id))[-1]["status"] == "stopped"
