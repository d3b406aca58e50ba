import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from chatapp.chat.models import Conversation, Message, get_conversation_for_user
from chatapp.teams.models import Invitation, Membership, Role, SystemPrompt


def conversation(team, owner, **extra):
    return Conversation.objects.create(
        team=team, owner=owner, model="Llama-3.3-8B-Instruct", **extra
    )


def violates(create) -> bool:
    try:
        with transaction.atomic():
            create()
    except IntegrityError:
        return True
    return False


def test_a_user_is_in_a_team_once(team, member):
    assert violates(lambda: Membership.objects.create(team=team, user=member, role=Role.ADMIN))


def test_membership_role_must_be_known(team, outsider):
    assert violates(lambda: Membership.objects.create(team=team, user=outsider, role="king"))


def test_invitations_cannot_make_owners(team, owner):
    assert violates(lambda: Invitation.objects.create(team=team, role=Role.OWNER))
    assert Invitation.objects.create(team=team, invited_by=owner, email="x@example.com").is_usable


def test_one_default_prompt_per_team(team):
    SystemPrompt.objects.create(team=team, name="A", content="a", is_default=True)
    SystemPrompt.objects.create(team=team, name="B", content="b")
    assert violates(
        lambda: SystemPrompt.objects.create(team=team, name="C", content="c", is_default=True)
    )


@pytest.mark.parametrize(
    "bad", [{"temperature": 2.5}, {"temperature": -0.1}, {"top_p": 1.5}, {"max_tokens": 0}]
)
def test_conversation_settings_are_range_checked(team, owner, bad):
    assert violates(lambda: conversation(team, owner, **bad))


def test_message_role_and_status_are_checked(team, owner):
    convo = conversation(team, owner)
    assert violates(lambda: Message.objects.create(conversation=convo, role="robot"))
    assert violates(lambda: Message.objects.create(conversation=convo, role="user", status="lost"))
    message = Message.objects.create(conversation=convo, role="assistant", status="streaming")
    assert message.usage is None


def test_conversations_are_private_to_their_owner(team, owner, member):
    convo = conversation(team, owner)
    assert list(Conversation.objects.for_user(owner)) == [convo]
    assert not Conversation.objects.for_user(member).exists()
    from django.http import Http404

    with pytest.raises(Http404):
        get_conversation_for_user(member, convo.pk)
    with pytest.raises(Http404):
        get_conversation_for_user(owner, "not-a-number")


def test_messages_come_back_in_order(team, owner):
    convo = conversation(team, owner)
    ids = [
        Message.objects.create(conversation=convo, role=r).pk
        for r in ("system", "user", "assistant")
    ]
    assert list(convo.messages.values_list("pk", flat=True)) == ids


def test_a_conversation_by_id_joins_only_the_relations_named(team, owner):
    convo = conversation(team, owner)
    with CaptureQueriesContext(connection) as queries:
        found = get_conversation_for_user(owner, convo.pk)
    assert found == convo
    assert [" JOIN " in q["sql"] for q in queries.captured_queries] == [False]

    with CaptureQueriesContext(connection) as queries:
        found = get_conversation_for_user(owner, convo.pk, ["team"])
        assert found.team == team  # read along, no second statement
    [statement] = [q["sql"] for q in queries.captured_queries]
    assert statement.count(" JOIN ") == 1 and '"teams_team"' in statement
