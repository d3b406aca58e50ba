"""Answers stop when what they belong to is deleted under them: a team (its conversations go
with it, and their owners' tabs are told) or a user (theirs go too), as when a conversation is
deleted through the API; when their owner is deactivated; and when
their owner leaves the conversation's team, or is removed from it, as no new question may be
asked there then (`forbidden`). A membership that ends is also announced to the user's sockets
(`team.left`), so a page still showing that team says so.

Without this an answer would keep streaming upstream to its end, spending tokens no usage row
counts, and keep showing its text to the open tabs of a conversation that is gone.
"""

import logging

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.signals import post_save, pre_delete
from django.dispatch import receiver

from chatapp.accounts.sockets import user_group
from chatapp.chat import events
from chatapp.chat.actions import conversations, replies
from chatapp.chat.models import Conversation, Message, MessageStatus
from chatapp.core.layers import channel_layer
from chatapp.teams.models import Membership, Team

log = logging.getLogger(__name__)


def stop_answers_of(conversations: Q, reason: str = "") -> None:
    """Once the deletion commits, stop the answers streaming in these conversations."""
    streaming = list(
        Message.objects.filter(conversations, status=MessageStatus.STREAMING).values_list(
            "id", flat=True
        )
    )

    def stop() -> None:
        for message_id in streaming:  # wherever they run
            try:
                async_to_sync(replies.request_stop)(message_id, reason)
            except Exception:  # channel layer down: the answer ends on its own, unsaved
                log.warning("Could not stop answer %s of a deleted conversation", message_id)

    if streaming:
        transaction.on_commit(stop)


def _team_deleted(origin) -> bool:
    """Whether a deletion started from a team (or teams): its members were handled at once."""
    return isinstance(origin, Team) or (isinstance(origin, QuerySet) and origin.model is Team)


@receiver(pre_delete, sender=Team)
def stop_answers_of_team(sender, instance: Team, **kwargs) -> None:
    stop_answers_of(Q(conversation__team=instance))
    # Its members' pages hear first that the team is gone, so that one leaving a conversation
    # of it does not start a new chat there; then their tabs drop its conversations.
    announce_left(instance.pk, list(instance.memberships.values_list("user_id", flat=True)))
    owned = Conversation.objects.filter(team=instance).values_list("pk", "owner_id")
    conversations.announce_deletions(list(owned))


@receiver(pre_delete, sender=get_user_model())
def stop_answers_of_user(sender, instance, **kwargs) -> None:
    stop_answers_of(Q(conversation__owner=instance))


@receiver(post_save, sender=get_user_model())
def stop_answers_of_deactivated_user(sender, instance, created, **kwargs) -> None:
    """Shut out by a site admin: their answers end with their sessions (accounts.sockets)."""
    if getattr(instance, "_deactivated", False):
        stop_answers_of(Q(conversation__owner=instance))


@receiver(pre_delete, sender=Membership)
def stop_answers_of_former_member(sender, instance: Membership, origin=None, **kwargs) -> None:
    if _team_deleted(origin):
        return  # stop_answers_of_team stopped them all
    stop_answers_of(
        Q(conversation__team_id=instance.team_id, conversation__owner_id=instance.user_id),
        replies.LEFT_TEAM,  # the page says why the answer stopped
    )


@receiver(pre_delete, sender=Membership)
def announce_team_left(sender, instance: Membership, origin=None, **kwargs) -> None:
    if not _team_deleted(origin):  # else stop_answers_of_team told every member
        announce_left(instance.team_id, [instance.user_id])


def announce_left(team_id: int, user_ids: list[int]) -> None:
    """Once the memberships' end commits, tell the users' open pages (a team deleted too)."""

    def send() -> None:
        # A deleted or deactivated user's sockets close instead.
        active = get_user_model().objects.filter(pk__in=user_ids, is_active=True)
        try:
            async_to_sync(_send_left)(team_id, list(active.values_list("pk", flat=True)))
        except Exception:  # the page finds out at its next refused request
            log.warning("Could not tell the members of team %s they left it", team_id)

    if user_ids:
        transaction.on_commit(send)


async def _send_left(team_id: int, user_ids: list[int]) -> None:
    layer = channel_layer()
    for user_id in user_ids:
        try:
            await layer.group_send(user_group(user_id), dict(events.team_left(team_id)))
        except Exception:  # the page finds out at its next refused request
            log.warning("Could not tell user %s they left team %s", user_id, team_id)
