"""A user's open chat sockets close when their session ends: logout, deactivation, deletion,
a password change.

Every chat socket joins its user's group (`chat.user.<id>`); an ended session is announced
there and the sockets it authenticated close with code 4401, which the page shows as
"your session ended". Logout ends one session; deactivation and deletion end them all; a new
password ends all but the session that set it (the user's own change keeps their tab).
"""

import hashlib
import logging
from collections.abc import Iterable
from contextvars import ContextVar

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.contrib.auth import get_user, get_user_model
from django.contrib.auth.signals import user_logged_out
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from chatapp.core.layers import channel_layer
from chatapp.core.sessions import SessionStore

log = logging.getLogger(__name__)

SESSIONS_ENDED = "user.sessions_ended"
# The session of the HTTP request being handled (set by CurrentSessionMiddleware).
current_session_key: ContextVar[str | None] = ContextVar("current_session_key", default=None)


def user_group(user_id: int) -> str:
    return f"chat.user.{user_id}"


def session_fingerprint(session_key: str | None) -> str | None:
    """Names a session in channel-layer events without putting its key (a credential) there."""
    if not session_key:
        return None
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


def ends_session(event: dict, fingerprint: str | None) -> bool:
    """Whether a sessions-ended event covers the socket whose session has this fingerprint."""
    if fingerprint is not None and event.get("kept") == fingerprint:
        return False
    return event.get("session") is None or event["session"] == fingerprint


@database_sync_to_async
def still_signed_in(session_key: str | None, user_id: int) -> bool:
    """Whether the session, read again now, still signs in this user (active, same password)."""
    if not session_key:
        return False
    request = HttpRequest()
    request.session = SessionStore(session_key)
    return bool(get_user(request).pk == user_id)


def close_user_sockets(
    user_id: int, session_key: str | None = None, *, keep_session: str | None = None
) -> None:
    """Once the current transaction commits, close the user's sockets: one session's if given,
    else all of them but keep_session's."""
    event = {
        "type": SESSIONS_ENDED,
        "session": session_fingerprint(session_key),
        "kept": session_fingerprint(keep_session),
    }

    def send() -> None:
        try:
            async_to_sync(channel_layer().group_send)(user_group(user_id), event)
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
    if getattr(instance, "_deactivated", False):
        end_sessions([instance.pk])


def end_sessions(user_ids: Iterable[int]) -> None:
    """Delete these users' sessions: a deactivated account's sessions end, rather than wait,
    refused, to be valid again should the account be given access again. Reads every live
    session once, however many users."""
    store, ended, users = SessionStore(), [], {str(user_id) for user_id in user_ids}
    live = Session.objects.filter(expire_date__gt=timezone.now())
    for key, data in live.values_list("session_key", "session_data").iterator():
        if store.decode(data).get("_auth_user_id") in users:
            ended.append(key)
    Session.objects.filter(session_key__in=ended).delete()


@receiver(pre_delete, sender=get_user_model())
def end_sessions_on_deletion(sender, instance, origin=None, **kwargs) -> None:
    # Its rows hold the account's id and a credential: they go with the account, not at expiry.
    if not isinstance(origin, QuerySet) or origin.model is not sender:
        end_sessions([instance.pk])
    elif not getattr(origin, "_sessions_ended", False):
        # Many accounts deleted at once (the admin's bulk delete): all their sessions together.
        origin._sessions_ended = True  # type: ignore[attr-defined]
        end_sessions(origin.values_list("pk", flat=True))


@receiver(post_delete, sender=get_user_model())
def close_sockets_on_deletion(sender, instance, **kwargs) -> None:
    close_user_sockets(instance.pk)


class CurrentSessionMiddleware:
    """Remembers the request's session, so a password it changes keeps that session's sockets."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # The key before the view runs: a password change cycles it, sockets know the old one.
        token = current_session_key.set(request.session.session_key)
        try:
            return self.get_response(request)
        finally:
            current_session_key.reset(token)


@receiver(pre_save, sender=get_user_model())
def note_password_change(sender, instance, update_fields=None, **kwargs) -> None:
    instance._password_changed = instance._deactivated = False
    watched = {"password", "is_active"}
    if instance.pk is None or (update_fields is not None and not watched & set(update_fields)):
        return  # a new account, or a save of other fields (last_login at every sign-in)
    stored = sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if stored is None:
        return
    if update_fields is None or "password" in update_fields:
        instance._password_changed = stored["password"] != instance.password
    if update_fields is None or "is_active" in update_fields:
        instance._deactivated = stored["is_active"] and not instance.is_active


@receiver(post_save, sender=get_user_model())
def close_sockets_on_password_change(sender, instance, created, **kwargs) -> None:
    """Set by the user, an admin (/admin/, SetPasswordForm) or `changepassword`."""
    if not created and getattr(instance, "_password_changed", False):
        close_user_sockets(instance.pk, keep_session=current_session_key.get())
