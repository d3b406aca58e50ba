"""Other people's ids, in every endpoint and with every method: 404, nothing leaked, nothing
changed. The victims are another team (and everything in it) and a teammate's conversation;
the attacker owns a team of their own, so their own ids are valid everywhere.

The websocket frames are swept in tests/chat/test_consumer_frames.py (another team's ids) and
below (a teammate's).
"""

import itertools
import json

import pytest
from django.apps import apps
from django.test import Client

from chatapp.chat.actions.sharing import share_conversation
from chatapp.chat.models import Conversation, Message
from chatapp.teams.actions import create_api_key
from chatapp.teams.models import (
    Invitation,
    JsonSchema,
    Membership,
    Role,
    SafetyFlag,
    SystemPrompt,
    Team,
)
from chatapp.tools.models import ToolServer
from chatapp.uploads.actions import create_upload
from tests.chat import conftest as chat
from tests.security.routes import project_routes

SECRET = "SECRET-7c1e"
# Parameters that are not ids: the invitation token (and its signed confirmation) is itself
# the credential; which models a team may use is its policy's (tests/openai_api).
NOT_IDS = {"token", "signature", "model_name"}
METHODS = ("get", "post", "put", "patch", "delete")
FORM = {"role": "admin", "direction": "up", "name": "x", "content": "y", "title": "mine now"}
APPS = ("accounts", "teams", "chat", "uploads", "tools")

connect, chat_settings, clean_layer = chat.connect, chat.chat_settings, chat.clean_layer


def conversation_of(user, team, title: str) -> Conversation:
    conversation = Conversation.objects.create(team=team, owner=user, title=title, model="m")
    Message.objects.create(conversation=conversation, role="user", content=f"{SECRET} question")
    Message.objects.create(conversation=conversation, role="assistant", content=f"{SECRET} answer")
    return conversation


def flag_on(team: Team, conversation: Conversation) -> SafetyFlag:
    question = conversation.messages.filter(role="user").first()
    return SafetyFlag.objects.create(team=team, message=question, stage="input")


@pytest.fixture
def ids(owner, member, admin_member, outsider, team) -> dict[str, dict[str, list]]:
    """For each id parameter: the attacker's own values, and other people's."""
    theirs = Team.objects.create(name=f"{SECRET} team")
    their_membership = Membership.objects.create(team=theirs, user=outsider, role=Role.OWNER)
    their_prompt = SystemPrompt.objects.create(team=theirs, name="p", content=f"{SECRET} prompt")
    their_invitation = Invitation.objects.create(
        team=theirs, email="secret@example.com", invited_by=outsider
    )
    own_conversation = conversation_of(owner, team, "own")
    their_conversation = conversation_of(outsider, theirs, f"{SECRET} theirs")
    mine = {
        "team_id": team.pk,
        "membership_id": Membership.objects.get(team=team, user=member).pk,
        "prompt_id": SystemPrompt.objects.create(team=team, name="own", content="own").pk,
        "invitation_id": Invitation.objects.create(team=team, invited_by=owner).pk,
        "conversation_id": own_conversation.pk,
        "upload_id": create_upload(owner, team, "own.txt", b"own notes").pk,
        "key_id": create_api_key(owner, team, "own script")[0].pk,
        "flag_id": flag_on(team, own_conversation).pk,
        "share_id": share_conversation(owner, own_conversation, "team").pk,
        "share_token": share_conversation(owner, own_conversation, "team").token,
        "server_id": ToolServer.objects.create(team=team, name="own", url="https://9.9.9.9/").pk,
        "schema_id": JsonSchema.objects.create(team=team, name="own", schema={}).pk,
    }
    # A teammate's share for chosen members (not the attacker, the team's owner) and another
    # team's share: not found, whatever the attacker's role.
    teammates = share_conversation(
        member, conversation_of(member, team, f"{SECRET} shared"), "members", [admin_member.pk]
    )
    theirs_shared = share_conversation(outsider, their_conversation, "team")
    foreign = {
        "team_id": [theirs.pk],
        "membership_id": [their_membership.pk],
        "prompt_id": [their_prompt.pk],
        "invitation_id": [their_invitation.pk],
        "conversation_id": [
            their_conversation.pk,
            conversation_of(member, team, f"{SECRET} teammate's").pk,  # same team, not theirs
        ],
        "upload_id": [
            create_upload(outsider, theirs, "theirs.txt", f"{SECRET} notes".encode()).pk,
            create_upload(member, team, "teammate.txt", f"{SECRET} notes".encode()).pk,
        ],
        # A teammate's key is not foreign to the team's owner, who may revoke it.
        "key_id": [create_api_key(outsider, theirs, f"{SECRET} key")[0].pk],
        "flag_id": [flag_on(theirs, their_conversation).pk],
        "share_id": [teammates.pk, theirs_shared.pk],
        "share_token": [teammates.token, theirs_shared.token],
        "server_id": [
            ToolServer.objects.create(team=theirs, name=SECRET, url="https://9.9.9.9/").pk
        ],
        "schema_id": [
            JsonSchema.objects.create(team=theirs, name="theirs", schema={"title": SECRET}).pk
        ],
    }
    return {name: {"mine": [mine[name]], "foreign": foreign[name]} for name in mine}


def foreign_urls(ids) -> list[str]:
    """Every route with id parameters, once per mix of own and foreign ids (not all own)."""
    urls = []
    for route in project_routes():
        names = [n for n in route.parameters if n not in NOT_IDS]
        if not names or len(names) != len(route.parameters):
            continue
        unknown = [n for n in names if n not in ids]
        assert not unknown, f"{route.template}: add foreign values for {unknown}"
        choices = [[(v, k == "foreign") for k in ids[n] for v in ids[n][k]] for n in names]
        for combination in itertools.product(*choices):
            if any(foreign for _, foreign in combination):
                urls.append(
                    route.url(**{n: v for n, (v, _) in zip(names, combination, strict=True)})
                )
    return urls


def snapshot() -> dict:
    return {
        model._meta.label: list(model.objects.order_by("pk").values())
        for app in APPS
        for model in apps.get_app_config(app).get_models()
    }


def request(client: Client, method: str, url: str):
    if method in ("put", "patch"):
        return getattr(client, method)(url, json.dumps(FORM), content_type="application/json")
    if method == "post":
        return client.post(url, FORM)
    return getattr(client, method)(url)


def test_other_peoples_ids_are_404_everywhere_and_change_nothing(owner_client, ids):
    urls = foreign_urls(ids)
    assert len(urls) >= 30  # conversations, the API, and every team page and action
    before = snapshot()
    for url in urls:
        statuses = {}
        for method in METHODS:
            response = request(owner_client, method, url)
            statuses[method] = response.status_code
            assert SECRET.encode() not in response.content, (method, url)
            assert b"secret@example.com" not in response.content, (method, url)
        assert set(statuses.values()) <= {404, 405}, (url, statuses)
        assert 404 in statuses.values(), (url, statuses)
    assert snapshot() == before


def test_ids_past_the_databases_bigint_are_not_found_everywhere(owner_client, ids):
    """A number no key can hold, in place of each id in turn: refused as not found (or, in
    the JSON API, as an invalid path), never a failed query, and nothing changes."""
    before = snapshot()
    checked = 0
    for route in project_routes():
        names = [n for n in route.parameters if n not in NOT_IDS and n != "share_token"]
        if not names or len(names) != len(route.parameters):
            continue
        own = {n: ids[n]["mine"][0] for n in names}
        for name, number in itertools.product(names, (2**63, 10**30)):
            url = route.url(**{**own, name: number})
            statuses = {m: request(owner_client, m, url).status_code for m in METHODS}
            assert set(statuses.values()) <= {400, 404, 405}, (url, statuses)
            checked += 1
    assert checked >= 60
    assert snapshot() == before


@pytest.mark.django_db(transaction=True)
async def test_a_teammates_conversation_is_not_found_over_the_socket(connect, owner, member, team):
    from channels.db import database_sync_to_async

    conversation = await database_sync_to_async(conversation_of)(member, team, "teammate's")
    answer = await conversation.messages.filter(role="assistant").afirst()
    question = await conversation.messages.filter(role="user").afirst()
    socket = await connect(owner)
    frames = [
        {"type": "chat.send", "conversation_id": conversation.pk, "content": "mine now"},
        {"type": "chat.subscribe", "conversation_id": conversation.pk},
        {"type": "chat.stop", "message_id": answer.pk},
        {"type": "chat.regenerate", "message_id": answer.pk},
        {"type": "chat.edit", "message_id": question.pk, "content": "mine now"},
        {"type": "chat.switch", "message_id": question.pk},
        {
            "type": "chat.tool_decision",
            "message_id": answer.pk,
            "call_id": "call_1",
            "approve": True,
        },
    ]
    for frame in frames:
        reply = await socket.expect_error(frame)
        assert reply["error"]["code"] == "not_found", frame
        assert SECRET not in json.dumps(reply)
    assert await Message.objects.filter(conversation=conversation).acount() == 2
