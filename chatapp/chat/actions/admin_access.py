"""Break-glass reading: a site admin records why, and gets time-limited read access to one
member's conversation; the grant is audited (who, when, why) and shown to the owner."""

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from chatapp.chat.admin_access import DURATIONS
from chatapp.chat.models import AdminAccessGrant, Conversation
from chatapp.teams.actions import audit
from chatapp.teams.models import AuditAction


def grant_read_access(
    admin: Any, conversation: Conversation, reason: str, minutes: int
) -> AdminAccessGrant:
    reason = reason.strip()
    if minutes not in DURATIONS:
        raise ValueError(f"minutes must be one of {DURATIONS}")
    now = timezone.now()
    with transaction.atomic():
        grant = AdminAccessGrant.objects.create(
            conversation=conversation,
            owner=conversation.owner,
            admin=admin,
            admin_name=admin.get_username(),
            reason=reason,
            created_at=now,
            expires_at=now + timedelta(minutes=minutes),
        )
        audit(
            conversation.team,
            admin,
            AuditAction.ADMIN_ACCESS,
            f"{admin.get_username()} read conversation {conversation.pk} of"
            f" {conversation.owner.get_username()} for {minutes} minutes: {reason}",
            conversation_id=conversation.pk,
            owner=conversation.owner.get_username(),
            reason=reason,
            expires_at=grant.expires_at.isoformat(),
        )
    return grant
