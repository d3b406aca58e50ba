"""`team.left`: a membership that ends reaches every socket of its user, and no one else's."""

import pytest
from channels.db import database_sync_to_async

from chatapp.chat.models import Conversation
from chatapp.teams import actions
from chatapp.teams.models import Membership, Role

pytestmark = pytest.mark.django_db(transaction=True)


def membership(user, team) -> Membership:
    return Membership.objects.select_related("team", "user").get(user=user, team=team)


async def test_a_removal_reaches_every_socket_of_the_removed_member_only(
    connect, owner, member, outsider, team
):
    socket = await connect(member)
    other_tab = await connect(member)
    owners = await connect(owner)
    stranger = await connect(outsider)
    remove = database_sync_to_async(
        lambda: actions.remove_member(membership(owner, team), membership(member, team))
    )
    await remove()
    expected = {"type": "team.left", "team_id": team.pk}
    assert (await socket.until_type("team.left"))[-1] == expected
    assert (await other_tab.until_type("team.left"))[-1] == expected
    assert await owners.nothing_more()
    assert await stranger.nothing_more()


async def test_leaving_reaches_the_sockets_of_whoever_left(connect, owner, member, team):
    socket = await connect(member)
    await database_sync_to_async(lambda: actions.leave_team(membership(member, team)))()
    assert (await socket.until_type("team.left"))[-1] == {"type": "team.left", "team_id": team.pk}


async def test_a_deleted_team_reaches_each_of_its_members(connect, owner, member, team):
    sockets = [await connect(owner), await connect(member)]
    team_id = team.pk
    await team.adelete()
    for socket in sockets:
        assert (await socket.until_type("team.left"))[-1] == {
            "type": "team.left",
            "team_id": team_id,
        }


async def test_a_deleted_teams_conversations_leave_their_owners_tabs(connect, owner, member, team):
    """A tab showing one of them leaves it, as for a conversation deleted in another tab."""
    mine = await Conversation.objects.acreate(team=team, owner=member, model="m")
    await Conversation.objects.acreate(team=team, owner=owner, model="m")
    socket = await connect(member)
    await team.adelete()
    frames = [await socket.receive(), await socket.receive()]
    assert sorted((f["type"], f.get("conversation_id", 0)) for f in frames) == [
        ("conversation.deleted", mine.pk),
        ("team.left", 0),
    ]
    assert await socket.nothing_more()  # not the owner's conversation


async def test_a_role_change_is_no_leaving(connect, owner, member, team):
    socket = await connect(member)
    change = database_sync_to_async(
        lambda: actions.change_role(membership(owner, team), membership(member, team), Role.ADMIN)
    )
    await change()
    assert await socket.nothing_more()
