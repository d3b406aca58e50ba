"""A password typed while signed in, to change it or to delete the account, is a guess like a
sign-in's: whoever holds a session left open could otherwise try passwords without end. The
wrong ones count with the sign-in's failures in django-axes (per username and address, for
LOGIN_FAILURE_LIMIT for LOGIN_LOCKOUT_MINUTES), and past the limit the page checks no more."""

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest

from chatapp.core.words import counted


def may_guess(request: HttpRequest, user) -> bool:
    """Whether a password typed for this account from this address is checked at all."""
    return AxesProxyHandler.is_allowed(request, _credentials(user))


def wrong_guess(request: HttpRequest, user) -> None:
    """Count a wrong password typed for this account."""
    user_login_failed.send(sender=__name__, credentials=_credentials(user), request=request)
    # The page refusing more guesses says so itself: axes' middleware would answer with the
    # sign-in page instead.
    request.axes_locked_out = False  # type: ignore[attr-defined]


def lockout_wait() -> str:
    """How long a lock lasts, in words: "15 minutes"."""
    return counted(int(settings.AXES_COOLOFF_TIME.total_seconds() // 60), "minute")


def too_many_message() -> str:
    return (
        "Too many wrong passwords for this account from your address: wait"
        f" {lockout_wait()} and try again."
    )


def _credentials(user) -> dict[str, str]:
    return {"username": user.get_username()}
