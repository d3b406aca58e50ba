"""Two tabs of one user on two server processes (PostgreSQL and the channels-redis layer).

What one tab does, or what happens to the user, the team or the conversation elsewhere (a
site admin's shell stands for another server here), reaches the tab on the other process as
it would one on the same process.
"""

import os

import pytest
import websockets

from tests.databases import uses_postgres
from tests.resilience.servers import ChatClient, manage, server_env, text_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (uses_postgres() and os.environ.get("REDIS_URL")),
        reason="runs on PostgreSQL and Redis: set DATABASE_URL=postgres://... and REDIS_URL",
    ),
]

SLOW = "[sim:pace tps=25] [sim:long tokens=200]"


@pytest.fixture
def two(launch):
    redis = os.environ["REDIS_URL"]
    return launch("first", REDIS_URL=redis), launch("second", REDIS_URL=redis)


def shell(env: dict[str, str], code: str) -> str:
    return manage(env, "shell", "-v", "0", "-c", code).strip()


def member_of_a_shared_team(env: dict[str, str], name: str) -> tuple[str, int]:
    """A member (not the owner) of a team of two; returns their session cookie and the team."""
    code = (
        "from django.conf import settings\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.test import Client\n"
        "from chatapp.teams.actions import create_team\n"
        "from chatapp.teams.models import Membership\n"
        "User = get_user_model()\n"
        f"owner = User.objects.create_user({name!r} + '_owner', password='pw')\n"
        f"user = User.objects.create_user({name!r}, password='pw')\n"
        "team = create_team(owner, 'Shared')\n"
        "Membership.objects.create(team=team, user=user, role='member')\n"
        "client = Client()\n"
        "client.force_login(user)\n"
        "print(client.cookies[settings.SESSION_COOKIE_NAME].value, team.pk)\n"
    )
    session, team_id = shell(env, code).splitlines()[-1].split()
    return session, int(team_id)


async def test_a_regenerate_edit_and_switch_in_one_process_reach_a_tab_in_the_other(
    two, session_for
):
    first, second = two
    session = session_for()
    on_first = await ChatClient(first, session).connect()
    on_second = await ChatClient(second, session).connect()

    created = await on_first.send_message("[sim:long tokens=20] Llamas?")
    answer_id, conversation_id = created["id"], created["conversation_id"]
    await on_first.until_type("message.done", answer_id)
    await on_second.send({"type": "chat.subscribe", "conversation_id": conversation_id})
    await on_second.until_type("conversation.state")

    # The first tab regenerates: the second sees the new version stream and end.
    await on_first.send({"type": "chat.regenerate", "message_id": answer_id})
    made = await on_second.until(
        lambda f: f["type"] == "message.created" and f["message"]["role"] == "assistant"
    )
    regenerated = made[-1]
    assert regenerated["replaces"] == answer_id
    new_id = regenerated["message"]["id"]
    done = await on_second.until_type("message.done", new_id)
    assert done[-1]["status"] == "complete"
    await on_first.until_type("message.done", new_id)
    assert text_of(on_second.received, new_id) == text_of(on_first.received, new_id)

    # The second tab switches back to the first version: the first tab hears of it.
    await on_second.send({"type": "chat.switch", "message_id": answer_id})
    await on_second.until_type("conversation.state")
    switched = (await on_first.until_type("conversation.switched"))[-1]
    assert switched["leaf_id"] == answer_id

    # The first tab edits the question: the second sees the new question and its answer.
    question_id = regenerated["message"]["parent_id"]
    await on_first.send(
        {"type": "chat.edit", "message_id": question_id, "content": "[sim:long tokens=5] Alpacas?"}
    )
    made = await on_second.until(
        lambda f: f["type"] == "message.created" and f["message"]["role"] == "assistant"
    )
    edited_answer = made[-1]["message"]["id"]
    assert (await on_second.until_type("message.done", edited_answer))[-1]["status"] == "complete"
    await on_first.close()
    await on_second.close()


async def test_removal_from_the_team_stops_an_answer_watched_from_the_other_process(
    two, server_database, sim
):
    first, second = two
    env = server_env(server_database.url, sim, REDIS_URL=os.environ["REDIS_URL"])
    session, team_id = member_of_a_shared_team(env, "removed_member")
    on_first = await ChatClient(first, session).connect()
    on_second = await ChatClient(second, session).connect()
    await on_first.send(
        {"type": "chat.send", "conversation_id": None, "team_id": team_id, "content": SLOW}
    )
    created = await on_first.until(
        lambda f: f["type"] == "message.created" and f["message"]["role"] == "assistant"
    )
    answer = created[-1]["message"]
    await on_first.until_type("message.delta", answer["id"])
    await on_second.send({"type": "chat.subscribe", "conversation_id": answer["conversation_id"]})
    await on_second.until_type("conversation.state")

    shell(
        env,
        "from chatapp.teams.actions import remove_member\n"
        "from chatapp.teams.models import Membership\n"
        f"team = {team_id}\n"
        "owner = Membership.objects.get(team_id=team, role='owner')\n"
        "remove_member(owner, Membership.objects.get(team_id=team, role='member'))\n",
    )
    frames = await on_second.until_type("message.done", answer["id"])
    assert frames[-1]["status"] == "stopped"
    error = next(f for f in frames if f["type"] == "message.error")["error"]
    assert error["code"] == "forbidden"
    left = await on_first.until_type("team.left")
    assert left[-1]["team_id"] == team_id
    await on_first.close()
    await on_second.close()


async def test_a_deactivated_users_sockets_close_in_every_process(two, session_for, sim):
    first, second = two
    session = session_for()
    on_first = await ChatClient(first, session).connect()
    on_second = await ChatClient(second, session).connect()
    created = await on_first.send_message(SLOW)
    await on_second.send({"type": "chat.subscribe", "conversation_id": created["conversation_id"]})
    await on_second.until_type("conversation.state")

    shell(
        first.env,
        "from chatapp.core.sessions import SessionStore\n"
        "from django.contrib.auth import get_user_model\n"
        f"user_id = SessionStore({session!r}).get('_auth_user_id')\n"
        "user = get_user_model().objects.get(pk=user_id)\n"
        "user.is_active = False\n"
        "user.save()\n",
    )
    for client in (on_first, on_second):
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await client.until(lambda f: False)
        assert client.ws.close_code == 4401


async def test_a_rename_and_a_deletion_reach_both_processes_and_stop_the_answer(two, session_for):
    first, second = two
    session = session_for()
    on_first = await ChatClient(first, session).connect()
    on_second = await ChatClient(second, session).connect()
    created = await on_first.send_message("[sim:pace tps=25] [sim:long tokens=3000]")
    conversation_id = created["conversation_id"]
    await on_second.send({"type": "chat.subscribe", "conversation_id": conversation_id})
    await on_second.until_type("conversation.state")
    api = (
        "from chatapp.core.sessions import SessionStore\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.test import Client\n"
        f"user_id = SessionStore({session!r}).get('_auth_user_id')\n"
        "client = Client()\n"
        "client.force_login(get_user_model().objects.get(pk=user_id))\n"
        f"path = '/api/conversations/{conversation_id}/'\n"
    )
    renamed = shell(
        first.env,
        api + "print(client.patch(path, {'title': 'Renamed'}, content_type='application/json',"
        " HTTP_HOST='127.0.0.1').status_code)",
    )
    assert renamed.splitlines()[-1] == "200", renamed
    for client in (on_first, on_second):
        updated = (await client.until_type("conversation.updated"))[-1]
        assert updated["conversation"]["title"] == "Renamed"
    shell(first.env, api + "print(client.delete(path, HTTP_HOST='127.0.0.1').status_code)")
    for client in (on_first, on_second):
        frames = await client.until_type("conversation.deleted")
        assert frames[-1]["conversation_id"] == conversation_id
    done = await on_first.until_type("message.done", created["id"])
    assert done[-1]["status"] == "stopped"
    done = await on_second.until_type("message.done", created["id"])
    assert done[-1]["status"] == "stopped"
    await on_first.close()
    await on_second.close()
