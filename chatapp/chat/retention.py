"""What each team's retention policy says must go: the plan `manage.py purge_expired` carries
out (chatapp.chat.actions.retention). Planning reads only.

A team keeps its conversations forever unless its policy sets `retention_days`; then a
conversation nobody wrote in for that many days (neither the conversation nor any of its
messages changed since) expires. Pinned conversations never expire, nor does anything of a
team under legal hold. Temporary chats have their own, shorter life (purge_temporary).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Exists, OuterRef, QuerySet

from chatapp.chat.models import Conversation, Message, MessageStatus
from chatapp.teams.models import Team, TeamPolicy


@dataclass(frozen=True)
class TeamWindow:
    team: Team
    days: int
    cutoff: datetime  # conversations untouched since before this expire


def windows(now: datetime) -> list[TeamWindow]:
    """Each team whose policy deletes old conversations, and the moment before which they go."""
    policies = (
        TeamPolicy.objects.filter(retention_days__isnull=False, legal_hold=False)
        .select_related("team")
        .order_by("team_id")
    )
    found = []
    for p in policies:
        if p.retention_days and (cutoff := _cutoff(now, p.retention_days)) is not None:
            found.append(TeamWindow(p.team, p.retention_days, cutoff))
    return found


def _cutoff(now: datetime, days: int) -> datetime | None:
    """`days` before `now`; None for a window reaching before year 1 (stored past the policy
    pages' bound): nothing is that old, so the team keeps everything, and other teams purge."""
    try:
        return now - timedelta(days=days)
    except OverflowError:
        return None


def still_applies(window: TeamWindow) -> bool:
    """Whether the team's policy still says what it said when the window was read: a legal
    hold put on, or a window widened or lifted, while the purge runs stops it there."""
    policy = TeamPolicy.objects.filter(team=window.team).first()
    return policy is not None and not policy.legal_hold and policy.retention_days == window.days


def expired(window: TeamWindow) -> QuerySet[Conversation]:
    """The team's conversations the window deletes: untouched since the cutoff, not pinned,
    not temporary (those go by purge_temporary), no answer still streaming."""
    recent = Message.objects.filter(conversation=OuterRef("pk"), updated_at__gte=window.cutoff)
    streaming = Message.objects.filter(conversation=OuterRef("pk"), status=MessageStatus.STREAMING)
    return (
        Conversation.objects.filter(
            team=window.team, updated_at__lt=window.cutoff, pinned=False, temporary=False
        )
        .exclude(Exists(recent))
        .exclude(Exists(streaming))
        .order_by("pk")
    )
