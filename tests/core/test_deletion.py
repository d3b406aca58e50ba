"""Deleting a user or a team removes their data; what is kept is kept without naming them."""

from datetime import date

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model

from chatapp.accounts.actions import delete_users
from chatapp.accounts.models import UserSettings
from chatapp.chat.models import Conversation, Message
from chatapp.teams.actions import ensure_personal_team
from chatapp.teams.models import (
    AuditEvent,
    Invitation,
    Membership,
    RecentRequest,
    SystemPrompt,
    SystemPromptVersion,
    Team,
    TeamUsage,
)

PROJECT_APPS = ("accounts", "teams", "chat", "core", "llm")


def chat(team, owner, text="hello") -> Conversation:
    convo = Conversation.objects.create(team=team, owner=owner, model="Llama-3.3-8B-Instruct")
    Message.objects.create(conversation=convo, role="user", content=text)
    Message.objects.create(conversation=convo, role="assistant", content="hi", prompt_tokens=3)
    return convo


def references(target_model, pk) -> dict[str, int]:
    """Rows in the project's models whose foreign keys still point at the deleted row."""
    found = {}
    for model in apps.get_models():
        if model._meta.app_label not in PROJECT_APPS:
            continue
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is target_model:
                count = model.objects.filter(**{field.attname: pk}).count()
                if count:
                    found[f"{model.__name__}.{field.name}"] = count
    return found


@pytest.fixture
def footprint(team, owner, member):
    """Everything a member leaves behind in a shared team and in their personal team."""
    personal = ensure_personal_team(member)
    chat(team, member, "team secret")
    chat(personal, member, "personal secret")
    prompt = SystemPrompt.objects.create(team=personal, name="Mine", content="be brief")
    SystemPromptVersion.objects.create(prompt=prompt, version=1, name="Mine", content="x")
    UserSettings.objects.create(user=member, model="Llama-3.3-8B-Instruct")
    TeamUsage.objects.create(
        team=team, user=member, model="Llama-3.3-8B-Instruct", day=date.today(), requests=4
    )
    RecentRequest.objects.create(team=team, user=member)
    Invitation.objects.create(team=team, email="x@example.com", invited_by=member)
    AuditEvent.objects.create(team=team, actor=member, action="invitation.create", summary="x")
    return personal


def test_deleting_a_user_removes_their_conversations_and_personal_team(
    footprint, team, owner, member, site_admin
):
    kept = chat(team, owner, "the owner's own")
    member_id, personal_id = member.pk, footprint.pk

    delete_users(site_admin, [member])  # as the admin site does

    assert references(get_user_model(), member_id) == {}
    assert not Team.objects.filter(pk=personal_id).exists()
    assert not Message.objects.filter(content__contains="secret").exists()
    assert not SystemPrompt.objects.filter(team_id=personal_id).exists()
    assert not Membership.objects.filter(user_id=member_id).exists()
    # The team's usage totals stay right, without saying whose they were.
    assert TeamUsage.objects.get(team=team).user is None
    assert TeamUsage.objects.get(team=team).requests == 4
    assert list(Conversation.objects.all()) == [kept]
    assert kept.messages.count() == 2


def test_deleting_a_team_removes_everything_in_it(footprint, team, owner, member):
    other = chat(footprint, member, "elsewhere")
    team_id = team.pk

    team.delete()

    assert references(Team, team_id) == {}
    assert not Message.objects.filter(content="team secret").exists()
    # Only the personal team's two conversations are left.
    assert set(Conversation.objects.values_list("team_id", flat=True)) == {footprint.pk}
    assert Conversation.objects.count() == 2
    assert other.messages.count() == 2
    assert get_user_model().objects.filter(pk__in=[owner.pk, member.pk]).count() == 2


def test_no_foreign_key_blocks_a_deletion():
    """PROTECT or RESTRICT on a user or team would make the deletions above fail."""
    for model in apps.get_models():
        if model._meta.app_label not in PROJECT_APPS:
            continue
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model in (get_user_model(), Team):
                rule = field.remote_field.on_delete.__name__
                assert rule in ("CASCADE", "SET_NULL"), f"{model.__name__}.{field.name}: {rule}"
