"""Deleting what the teams' retention policies say (chatapp.chat.retention plans it), with
the conversations' messages, shares and uploaded files, and a receipt in the team's audit
trail for each batch deleted: how many conversations, which window; never a title or a word
of content."""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from chatapp.chat import retention
from chatapp.chat.actions.conversations import announce_deletions, purge_temporary
from chatapp.chat.models import Conversation
from chatapp.core.locking import lock_rows
from chatapp.core.words import counted
from chatapp.teams.actions import audit
from chatapp.teams.models import AuditAction, TeamPolicy

BATCH = 500  # conversations deleted per transaction: memory stays bounded


@dataclass(frozen=True)
class TeamPurge:
    team_id: int
    team_name: str
    days: int
    cutoff: datetime
    conversations: int


def purge_expired(now: datetime, *, dry_run: bool = False) -> tuple[list[TeamPurge], int]:
    """Apply every team's retention window at `now`; returns what each team lost and how many
    temporary chats went. A dry run counts and deletes nothing. Running it twice at the same
    `now` deletes nothing the second time (and writes no second receipt)."""
    results = []
    for window in retention.windows(now):
        count = _count(window) if dry_run else _delete(window, now)
        if count:
            results.append(
                TeamPurge(window.team.pk, window.team.name, window.days, window.cutoff, count)
            )
    if dry_run:
        temporary = Conversation.objects.temporary_expired(now).count()
    else:
        temporary = purge_temporary(now)
    return results, temporary


def _count(window: retention.TeamWindow) -> int:
    return retention.expired(window).count()


def _next_batch(window: retention.TeamWindow) -> list[int]:
    return list(retention.expired(window).values_list("pk", flat=True)[:BATCH])


def _delete(window: retention.TeamWindow, now: datetime) -> int:
    deleted = 0
    while batch := _next_batch(window):
        with transaction.atomic():
            # A change of the policy waits for this batch, and the next one stops there.
            lock_rows(TeamPolicy.objects.filter(team=window.team))
            if not retention.still_applies(window):
                break
            # Checked again under lock: one pinned or written in since the batch was read
            # stays, and a pin or a new message waits for this transaction.
            rows = retention.expired(window).filter(pk__in=batch)
            lock_rows(rows)
            expired = list(rows.values_list("pk", "owner_id"))
            announce_deletions(expired)
            Conversation.objects.filter(pk__in=[pk for pk, _ in expired]).delete()
            # In the deletion's transaction: a run stopped part way leaves no deletion unreceipted.
            if expired:
                _receipt(window, now, len(expired))
        deleted += len(expired)
    return deleted


def _receipt(window: retention.TeamWindow, now: datetime, count: int) -> None:
    audit(
        window.team,
        None,
        AuditAction.RETENTION_PURGE,
        f"Retention deleted {counted(count, 'conversation')} untouched for"
        f" {counted(window.days, 'day')}"
        f" (since before {window.cutoff:%Y-%m-%d %H:%M} UTC)",
        conversations=count,
        retention_days=window.days,
        cutoff=window.cutoff.isoformat(),
        run_at=now.isoformat(),
    )
