"""Who may create an account (SIGNUP_POLICY): anyone, people holding an invitation, or people
with an address at one of SIGNUP_ALLOWED_DOMAINS. The very first account can always sign up.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import Resolver404, resolve

from chatapp.teams.models import Invitation

FIRST_ACCOUNT_NOTICE = (
    "You are this site's admin: the first account administers the site. "
    "The Site admin link opens the admin site (people, teams, the audit trail)."
)


def invitation_in(next_url: str) -> Invitation | None:
    """The usable invitation a signup's `next` leads to (/invite/<token>/), if any."""
    try:
        match = resolve(urlsplit(next_url).path)
    except Resolver404:
        return None
    if match.view_name != "teams:accept":
        return None
    token = match.kwargs.get("token", "")
    invitation = Invitation.objects.select_related("team").filter(token=token).first()
    return invitation if invitation is not None and invitation.is_usable else None


# How the login and signup pages ask the holder of an invitation link to accept it, and which
# account an invitation for one address needs.
ACCEPTING = {
    "login": ("Log in to accept it.", "use the account with that address"),
    "signup": ("Create your account to accept it.", "sign up with that address"),
}


def invitation_notice(invitation: Invitation | None, page: str) -> str:
    """What the login or signup `page` says of the invitation its `next` leads to: whoever
    holds the link should know what signing in is for."""
    if invitation is None:
        return ""
    role = {"owner": "an owner", "admin": "an admin"}.get(invitation.role, "a member")
    accept, account = ACCEPTING[page]
    notice = f"You are invited to join {invitation.team.name} as {role}. {accept}"
    if invitation.email:
        notice += f" It is for {invitation.email}: {account}."
    return notice


def signup_refusal(
    email: str, invitation: Invitation | None, *, address_verified: bool = False
) -> str | None:
    """Why this signup may not go ahead, or None when it may. `address_verified`: the
    identity provider verified the address, so no mail needs to prove it."""
    if not get_user_model().objects.exists():
        return None  # the first account: the site needs its admin
    if invitation is not None:
        if invitation.email and invitation.email.lower() != email.lower():
            return f"This invitation is for {invitation.email}: sign up with that address."
        return None
    policy = settings.SIGNUP_POLICY
    if policy == "open":
        return None
    if policy == "domain":
        domains = settings.SIGNUP_ALLOWED_DOMAINS
        listed = ", ".join(domains)
        if email.rpartition("@")[2].lower() not in domains:
            return (
                f"Sign up with an email address at {listed}, or ask a team admin for an invitation."
            )
        if not (
            address_verified or settings.EMAIL_URL
        ):  # anyone can type an address: it is proved by a mail
            return (
                f"An address at {listed} is confirmed by email, which this site does not send:"
                " ask a team admin for an invitation."
            )
        return None
    return "Signing up is by invitation only: ask a team admin for an invitation link."


def signup_notice(invitation: Invitation | None) -> str:
    """What the signup page says up front about who may sign up."""
    if invitation is not None or settings.SIGNUP_POLICY == "open":
        return ""
    if not get_user_model().objects.exists():
        return ""
    if settings.SIGNUP_POLICY == "domain":
        listed = ", ".join(settings.SIGNUP_ALLOWED_DOMAINS)
        return (
            f"Accounts are for email addresses at {listed} (a link mailed to yours confirms it),"
            " or by invitation."
        )
    return "Accounts are by invitation only: open the invitation link a team admin sent you."


def address_proof_needed(invitation: Invitation | None) -> bool:
    """Whether a signup's address is what admits it (SIGNUP_POLICY=domain): then the account
    works once a link mailed to the address is opened, as anyone can type any address."""
    return (
        settings.SIGNUP_POLICY == "domain"
        and invitation is None
        and get_user_model().objects.exists()
    )


def unconfirmed_signups():
    """Accounts a signup made whose address was never proved (SIGNUP_POLICY=domain): inactive,
    never signed in, in no team, and marked pending by the signup (not deactivated by an admin)."""
    users = get_user_model().objects
    return users.filter(
        is_active=False,
        last_login__isnull=True,
        memberships__isnull=True,
        pending_signup__isnull=False,
    )
