"""A user's open chat sockets close when their session ends: logout, deactivation, deletion.

Every chat socket joins its user's group (`chat.user.<id>`); an ended session is announced
there and the sockets it authenticated close with code 4401, which the page shows as
"your session ended". Logout ends one session; deactivation and deletion end them all.
"""

import hashlib
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

log = logging.getLogger(__name__)

SESSIONS_ENDED = "user.sessions_ended"


def user_group(user_id: int) -> str:
    return f"chat.user.{user_id}"


def session_fingerprint(session_key: str | None) -> str | None:
    """Names a session in channel-layer events without putting its key (a credential) there."""
    if not session_key:
        return None
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


def ends_session(event: dict, fingerprint: str | None) -> bool:
    """Whether a sessions-ended event covers the socket whose session has this fingerprint."""
    return event.get("session") is None or event["session"] == fingerprint


def close_user_sockets(user_id: int, session_key: str | None = None) -> None:
    """Once the current transaction commits, close the user's sockets (one session's if given)."""
    event = {"type": SESSIONS_ENDED, "session": session_fingerprint(session_key)}

    def send() -> None:
        try:
            async_to_sync(get_channel_layer().group_send)(user_group(user_id), event)
        except Exception:  # the logout or the save has happened; a socket may outlive it
            log.exception("Could not close the chat sockets of user %s", user_id)

    transaction.on_commit(send)


@receiver(user_logged_out)
def close_sockets_on_logout(sender, request, user, **kwargs) -> None:
    if user is not None and request is not None:
        close_user_sockets(user.pk, request.session.session_key)


@receiver(post_save, sender=get_user_model())
def close_sockets_on_deactivation(sender, instance, created, **kwargs) -> None:
    if not created and not instance.is_active:
        close_user_sockets(instance.pk)


@receiver(post_delete, sender=get_user_model())
def close_sockets_on_deletion(sender, instance, **kwargs) -> None:
    close_user_sockets(instance.pk)
