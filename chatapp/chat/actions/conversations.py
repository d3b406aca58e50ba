"""Conversation edits made through the JSON API, and the branch a conversation shows."""

import logging
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet

from chatapp.accounts.sockets import user_group
from chatapp.chat import events, tree
from chatapp.chat.errors import ChatError
from chatapp.chat.lookups import owned_message
from chatapp.chat.models import Conversation, MessageStatus
from chatapp.core.layers import channel_layer
from chatapp.core.locking import lock_rows
from chatapp.core.words import counted
from chatapp.teams import actions as team_actions
from chatapp.teams.models import AuditAction, Team, TeamPolicy

log = logging.getLogger(__name__)


def rename_conversation(conversation: Conversation, title: str) -> None:
    # A rename is not activity: the conversation keeps its place in the list.
    _check_updated(Conversation.objects.filter(pk=conversation.pk).update(title=title))
    conversation.title = title
    # Every tab of the owner shows the new title, in its list and its header.
    _announce_to_owner(conversation, dict(events.conversation_updated(conversation.pk, title)))


def _check_updated(rows: int) -> None:
    """An edit that found no row: the conversation was deleted since the request found it (in
    another tab), and no tab is told of a change."""
    if not rows:
        raise ChatError("not_found", "No such conversation.", "conversation_id")


def _announce_to_owner(conversation: Conversation, event: dict[str, Any]) -> None:
    """Once the change commits, send the event to every chat socket of the owner."""
    _announce([(conversation.owner_id, conversation.pk, event)])


def _announce(changes: list[tuple[int, int, dict[str, Any]]]) -> None:
    """Once the change commits, send each (owner, conversation, event) to the owner's sockets."""

    async def send_all() -> None:
        layer = channel_layer()
        for owner_id, conversation_id, event in changes:
            try:
                await layer.group_send(user_group(owner_id), event)
            except Exception:  # the change is saved; the other tabs see it when they reload
                log.warning("Could not announce a change to conversation %s", conversation_id)

    def send() -> None:
        try:
            async_to_sync(send_all)()
        except Exception:
            log.warning("Could not announce changes to %d conversation(s)", len(changes))

    transaction.on_commit(send)


def announce_created(conversation: Conversation) -> None:
    """A conversation saved away from the chat page (an API exchange): once it commits, every
    chat socket of the owner lists it, as the other tabs list one a tab started."""
    created = events.conversation_created(
        None, conversation.pk, conversation.title, conversation.team_id
    )
    listed = {"type": "conversation.listed", "origin": None, "event": dict(created)}
    _announce([(conversation.owner_id, conversation.pk, listed)])


def announce_deletions(owned: list[tuple[int, int]]) -> None:
    """Conversations deleted in bulk, as (id, owner id): once the deletion commits, their
    owners' tabs drop them from their lists, and a tab showing one leaves it."""
    _announce([(owner, pk, dict(events.conversation_deleted(pk))) for pk, owner in owned])


def keep_generated_title(
    conversation_id: int,
    first_words: str,
    title: str,
    *,
    usage: tuple[int, int],
    team: Team,
    user: Any,
    model: str,
    policy: TeamPolicy | None = None,
    hold: int | None = None,
) -> bool:
    """Count the title request's tokens in place of its `hold`, and replace the conversation's
    first-words title with the model's unless someone renamed it meanwhile, in one
    transaction. Returns whether the title changed."""
    with transaction.atomic():
        team_actions.record_usage(team, user, model, *usage, policy=policy)
        if hold is not None:
            team_actions.release_hold(hold)
        if not title or title == first_words:
            return False
        # Like a rename, a title is not activity: the conversation keeps its place in the list.
        renamed = Conversation.objects.filter(pk=conversation_id, title=first_words)
        return renamed.update(title=title) == 1


def pin_conversation(conversation: Conversation, pinned: bool) -> None:
    # Pinning is not activity either.
    _check_updated(Conversation.objects.filter(pk=conversation.pk).update(pinned=pinned))
    conversation.pinned = pinned
    _announce_to_owner(conversation, dict(events.conversation_pinned(conversation.pk, pinned)))


def delete_conversation(conversation: Conversation) -> list[int]:
    """Delete it with its messages; returns the answers that were streaming, to stop them.
    Refused (ChatError legal_hold, nothing deleted) while its team is under legal hold."""
    with transaction.atomic():
        policy = TeamPolicy.objects.filter(team_id=conversation.team_id)
        lock_rows(policy)  # a hold put on meanwhile waits for the deletion, or stops it
        if policy.filter(legal_hold=True).exists():
            raise ChatError(
                "legal_hold",
                "This conversation is kept: its team is under legal hold, which keeps every"
                " conversation in it until the team's owners lift the hold in its policy.",
            )
        # A send writing its rows meanwhile holds the row (start_reply): its answer is seen,
        # stopped and deleted with the rest, rather than left pointing at a deleted row.
        lock_rows(Conversation.objects.filter(pk=conversation.pk))
        streaming = list(
            conversation.messages.filter(status=MessageStatus.STREAMING).values_list(
                "id", flat=True
            )
        )
        # The tabs showing it leave it, and their lists drop it.
        _announce_to_owner(conversation, dict(events.conversation_deleted(conversation.pk)))
        conversation.delete()
    return streaming


def admin_delete_conversation(actor: Any, conversation: Conversation) -> list[int]:
    """A site admin's deletion in the admin site: as the owner's own (legal hold, tabs told),
    and in the team's audit trail with whose it was, never its words (the title included)."""
    conversation_id, owner = conversation.pk, conversation.owner.get_username()
    with transaction.atomic():
        messages = conversation.messages.count()
        streaming = delete_conversation(conversation)
        team_actions.audit(
            conversation.team,
            actor,
            AuditAction.CONVERSATION_DELETE,
            f"{actor.get_username()} deleted conversation {conversation_id} of {owner}"
            f" ({counted(messages, 'message')}) in the admin site",
            conversation_id=conversation_id,
            owner=owner,
            messages=messages,
        )
    return streaming


def purge_temporary(now: datetime) -> int:
    """Delete the temporary chats older than TEMPORARY_LIFETIME at `now`; returns how many.

    Run by the reaper's sweep and by the retention command; a chat whose owner left it is
    deleted through the API at once, this catches the ones nobody closed."""
    found = _expired_temporary(now)
    if not found:  # an empty delete would still open a write transaction
        return 0
    with transaction.atomic():
        # Checked again under lock: a chat whose answer started streaming since stays, and a
        # send starting now waits for this transaction.
        rows = _temporary_to_purge(now).filter(pk__in=found)
        _hold_policies(rows)
        lock_rows(rows)
        expired = list(rows.values_list("pk", "owner_id"))
        announce_deletions(expired)
        Conversation.objects.filter(pk__in=[pk for pk, _ in expired]).delete()
    return len(expired)


def end_abandoned_temporary(conversation_id: int) -> bool:
    """Delete a temporary chat no socket follows any more, unless an answer streams in it;
    returns False while one does (True once it is gone, or was, or a legal hold keeps it: the
    sweep deletes it once the hold is lifted)."""
    with transaction.atomic():
        # Under lock, as purge_temporary: a send starting now waits for this transaction.
        rows = Conversation.objects.filter(pk=conversation_id, temporary=True)
        _hold_policies(rows)
        rows = rows.exclude(team__in=Team.objects.held())
        lock_rows(rows)
        if rows.filter(messages__status=MessageStatus.STREAMING).exists():
            return False
        found = list(rows.values_list("pk", "owner_id"))
        announce_deletions(found)
        rows.delete()
    return True


def _temporary_to_purge(now: datetime) -> QuerySet[Conversation]:
    expired = Conversation.objects.temporary_expired(now).exclude(team__in=Team.objects.held())
    return expired.exclude(messages__status=MessageStatus.STREAMING)


def _hold_policies(conversations: QuerySet[Conversation]) -> None:
    """Hold the policies of these conversations' teams until the transaction ends: a legal
    hold put on meanwhile waits for the deletion, or stops it. (Before the conversations'
    rows, in the order the retention purge takes them.)"""
    lock_rows(TeamPolicy.objects.filter(team_id__in=conversations.values("team_id")))


def teams_with_conversations_of(user_ids: set[int]) -> set[int]:
    """The teams holding conversations of these users: deleting them takes those along."""
    found = Conversation.objects.filter(owner_id__in=user_ids).values_list("team_id", flat=True)
    return set(found.order_by().distinct())  # unordered: a row per team, not per conversation


def _expired_temporary(now: datetime) -> list[int]:
    return list(_temporary_to_purge(now).values_list("pk", flat=True))


def switch_branch(
    user: Any, message_id: int, conversation_id: int | None = None
) -> tuple[int, int, bool]:
    """Show the branch through this message of the user's (in `conversation_id`, when named);
    returns (conversation, leaf, whether it is a temporary chat)."""
    message = owned_message(user, message_id)
    if conversation_id is not None and message.conversation_id != conversation_id:
        raise ChatError("not_found", "No such message in this conversation.", "message_id")
    conversation = message.conversation
    with transaction.atomic():
        # A send starting meanwhile, in any process, waits here (start_reply takes this lock
        # too): the branch shown is never set back under an answer that began streaming.
        lock_rows(get_user_model().objects.filter(pk=user.pk))
        if conversation.messages.filter(status=MessageStatus.STREAMING).exists():
            raise ChatError(
                "conversation_busy", "An answer is still streaming here: wait for it or stop it."
            )
        leaf = tree.conversation_branch(conversation.pk, message.pk).leaf
        assert leaf is not None  # the branch runs through the message
        # Choosing a branch is not activity: the conversation keeps its place in the list.
        Conversation.objects.filter(pk=conversation.pk).update(active_leaf_id=leaf)
    return conversation.pk, leaf, conversation.temporary


def teams_holding_others(team_ids: list[int], user_ids: set[int]) -> set[int]:
    """Of these teams, those with conversations of people other than these users (who keep
    them to read after leaving): a personal team deleted with its owner must not take them."""
    others = Conversation.objects.filter(team_id__in=team_ids).exclude(owner_id__in=user_ids)
    return set(others.values_list("team_id", flat=True).order_by().distinct())
