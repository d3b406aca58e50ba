"""During a rolling upgrade the processes of an earlier release keep serving while a new one
applies the migrations: what they write must still fit the tables. Each test writes through
that release's models, rebuilt from the migration state it knew, into today's schema."""

from django.db import connection
from django.db.migrations.loader import MigrationLoader

from chatapp.accounts.models import PendingSignup
from chatapp.chat.models import Conversation, Message, Share
from chatapp.teams.models import BudgetHold


def models_as_of(*migrations: tuple[str, str]):
    """The models as the release whose newest migrations are these knew them."""
    return MigrationLoader(connection).project_state(list(migrations)).apps


def conversation(team, owner) -> Conversation:
    return Conversation.objects.create(team=team, owner=owner, model="Llama-3.3-8B-Instruct")


def test_an_earlier_release_still_shares_a_conversation(team, owner):
    """Share.system_prompt (chat.0018) has a database default, so a share made without it
    is stored with none."""
    old = models_as_of(("chat", "0017_search_message_start"))
    chat = conversation(team, owner)
    share = old.get_model("chat", "Share").objects.create(
        conversation_id=chat.pk, owner_id=owner.pk, team_id=team.pk, audience="team"
    )
    assert Share.objects.get(pk=share.pk).system_prompt == ""


def test_an_earlier_release_still_writes_messages_and_budget_holds(team, owner):
    """Message.server_process (chat.0021) and BudgetHold.server_process (teams.0022) have
    database defaults: rows of an earlier release name no process."""
    old = models_as_of(("chat", "0020_share_owner_recent"), ("teams", "0021_team_month_usage"))
    chat = conversation(team, owner)
    message = old.get_model("chat", "Message").objects.create(
        conversation_id=chat.pk, role="assistant", status="streaming"
    )
    hold = old.get_model("teams", "BudgetHold").objects.create(
        team_id=team.pk, user_id=owner.pk, tokens=10, expires_at=chat.created_at
    )
    assert Message.objects.get(pk=message.pk).server_process == ""
    assert BudgetHold.objects.get(pk=hold.pk).server_process == ""


def test_an_earlier_release_still_takes_signups_to_confirm(make_user):
    """PendingSignup.wrong_passwords (accounts.0006) has a database default: a signup an
    earlier release takes starts with none."""
    old = models_as_of(("accounts", "0005_address_mail"))
    user = make_user("eve", is_active=False)
    old.get_model("accounts", "PendingSignup").objects.create(user_id=user.pk)
    assert PendingSignup.objects.get(user=user).wrong_passwords == 0
