"""Break-glass reading, the reads: which conversation a site admin asks about, their open
grant, and the grants a conversation's owner sees. The grant itself is written by
chatapp.chat.actions.admin_access."""

from django.http import Http404

from chatapp.chat.models import AdminAccessGrant, Conversation
from chatapp.core.permissions import require_site_admin

# How long a grant lasts, in minutes: the admin picks one.
DURATIONS = (15, 60, 240)
REASON_MIN_LENGTH = 10


def conversation_for_site_admin(user, conversation_id) -> Conversation:
    """Any conversation, for a site admin; 404 for everyone else and for a missing id."""
    require_site_admin(user)
    conversation = (
        Conversation.objects.select_related("owner", "team").filter(pk=conversation_id).first()
    )
    if conversation is None:
        raise Http404("No such conversation")
    return conversation


def active_grant(admin, conversation: Conversation) -> AdminAccessGrant | None:
    return (
        AdminAccessGrant.objects.active()
        .filter(conversation=conversation, admin=admin)
        .order_by("-expires_at")
        .first()
    )


def grants_on_conversations_of(user):
    """Every grant on the user's own conversations (deleted ones too), newest first, for their
    own pages."""
    return AdminAccessGrant.objects.filter(owner=user).select_related("admin", "conversation")
