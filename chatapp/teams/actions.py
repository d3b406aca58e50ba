"""Every change to a team goes through one of these functions.

Changes a person makes (members, prompts, policy, provider) also write their audit event;
the bookkeeping of answers (admission against the rate limit, the tokens API answers hold
against the budgets while they stream, token usage) does not.

Callers check that the actor may act in the team at all (chatapp.teams.services); the rules
that depend on the target (owners, the last owner) are checked here and raise ActionError.
"""

import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import partial

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, Max, OuterRef, Q, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from chatapp.core import actions as core_actions
from chatapp.core import processes
from chatapp.core.dates import month_start
from chatapp.core.locking import lock_rows, locked_if_there
from chatapp.core.metrics import SAFETY_REVIEWS
from chatapp.core.text import one_line
from chatapp.core.words import counted
from chatapp.llm import GUARD_CATEGORIES
from chatapp.teams import api_keys, budgets, crypto, json_schemas
from chatapp.teams.models import (
    ApiKey,
    AuditAction,
    AuditEvent,
    BudgetHold,
    BudgetNotice,
    Invitation,
    JsonSchema,
    Membership,
    RecentRequest,
    ResponseFormat,
    Role,
    SafetyDecision,
    SafetyFlag,
    SystemPrompt,
    SystemPromptVersion,
    Team,
    TeamMonthUsage,
    TeamPolicy,
    TeamProvider,
    TeamUsage,
    lock_audit_chain,
    state_token,
)
from chatapp.teams.policy import PolicyError
from chatapp.teams.quota import RATE_WINDOW, seconds_until_admitted
from chatapp.teams.safety import Finding

log = logging.getLogger(__name__)

POLICY_FIELDS = (
    "allowed_models",
    "default_model",
    "default_temperature",
    "default_top_p",
    "default_max_tokens",
    "max_tokens_limit",
    "monthly_token_budget",
    "member_monthly_token_budget",
    "rate_limit_per_minute",
    "safety_input",
    "safety_output",
    "safety_categories",
    "safety_on_error",
    "data_card",
    "data_iban",
    "data_email",
    "data_phone",
    "data_api_key",
    "data_private_key",
    "data_patterns",
    "retention_days",
    "legal_hold",
)


class ActionError(Exception):
    """A change the team's rules refuse; the message says why and what to do."""

    def __init__(self, message: str, *, forbidden: bool = False):
        super().__init__(message)
        self.message = message
        self.forbidden = forbidden


class Gone(ActionError):
    """What the change is about was deleted (by someone else) since the page read it."""


class Changed(ActionError):
    """What the change is about was changed (by someone else) since the page read it."""


class LimitReached(ActionError):
    """The team keeps as many of these as the site allows (a TEAM_MAX_* setting)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def check_room(team: Team, kept: QuerySet, limit: int, code: str, things: str) -> None:
    """Refuse one more of the team's `kept` rows past `limit`. Called in a transaction that
    holds the team's row, so two additions at once cannot both pass."""
    lock_rows(Team.objects.filter(pk=team.pk), no_key=True)
    if kept.count() >= limit:
        raise LimitReached(
            code,
            f"This team keeps at most {limit} {things} (the site's limit): delete one it no"
            " longer uses first.",
        )


def audit(team: Team | None, actor, action: str, summary: str, **details) -> AuditEvent:
    if len(summary) > 300:  # the column's size; the details keep the whole of it
        summary = summary[:299] + "…"
    return AuditEvent.objects.create(
        team=team, actor=actor, action=action, summary=summary, details=details
    )


def _name(user) -> str:
    return user.get_username() if user is not None else "a deleted user"


# Teams and people.


def create_team(user, name: str) -> Team:
    with transaction.atomic():
        team = Team.objects.create(name=name)
        Membership.objects.create(team=team, user=user, role=Role.OWNER)
        audit(team, user, AuditAction.TEAM_CREATE, f"{_name(user)} created the team {name}")
    return team


def invite(
    actor, team: Team, *, email: str = "", role: str = Role.MEMBER, days: int = 7
) -> Invitation:
    """An invitation for one email address, or a shareable link when email is blank."""
    email = email.strip().lower()
    if role not in (Role.MEMBER, Role.ADMIN):
        raise ActionError("Invite people as members or admins; make owners from the member list.")
    if email and Membership.objects.filter(team=team, user__email__iexact=email).exists():
        raise ActionError(f"{email} is already a member of this team.")
    with transaction.atomic():
        pending = team.invitations.filter(accepted_at__isnull=True, expires_at__gt=timezone.now())
        limit = settings.TEAM_MAX_PENDING_INVITATIONS
        check_room(team, pending, limit, "too_many_invitations", "pending invitations")
        # Under the team's row (check_room's lock): a double submit makes one invitation.
        waiting = pending.filter(email__iexact=email).first() if email else None
        if waiting is not None:
            raise ActionError(
                f"{email} already has an invitation to this team waiting, valid until"
                f" {waiting.expires_at:%Y-%m-%d %H:%M} UTC: copy its link below, or revoke it"
                " to invite them again."
            )
        invitation = Invitation.objects.create(
            team=team,
            email=email,
            role=role,
            invited_by=actor,
            expires_at=timezone.now() + timedelta(days=days),
        )
        target = email or "a shareable link"
        audit(
            team,
            actor,
            AuditAction.INVITE,
            f"{_name(actor)} invited {target} as {role}",
            invitation_id=invitation.pk,
            email=email,
            role=role,
        )
    return invitation


# One invitation mail an address per this long, however often it is invited, from any team.
INVITATION_MAIL_PAUSE = timedelta(minutes=5)


def email_invitation(invitation: Invitation, link: str) -> bool:
    """Send the invitation link by email; False, nothing mailed, when an invitation mail went
    to its address within the pause (inviting and revoking over and over, from any team, would
    flood the inbox). OSError when the mail server fails (the pause is not taken)."""
    return core_actions.mail_unless_paused(
        "invitation",
        invitation.email,
        INVITATION_MAIL_PAUSE,
        f"You are invited to {one_line(invitation.team.name)} on Llama team chat",
        f"{_name(invitation.invited_by)} invited you to join {invitation.team.name}"
        f" as {invitation.role}.\n\nAccept the invitation (valid until"
        f" {invitation.expires_at:%Y-%m-%d %H:%M} UTC, once):\n{link}\n",
    )


def revoke_invitation(actor, invitation: Invitation) -> None:
    with transaction.atomic():
        # Accepting locks it too: one used since the page listed it is not revoked.
        rows = Invitation.objects.filter(pk=invitation.pk)
        if not locked_if_there(rows):  # another admin's revocation is the one the trail records
            raise Gone("This invitation was revoked meanwhile, by someone else.")
        if rows.filter(accepted_at__isnull=False).exists():
            raise ActionError("This invitation has already been used: nothing to revoke.")
        target = invitation.email or "a shareable link"
        audit(
            invitation.team,
            actor,
            AuditAction.INVITE_REVOKE,
            f"{_name(actor)} revoked the invitation for {target}",
            invitation_id=invitation.pk,
        )
        invitation.delete()


class InvitationError(ActionError):
    def __init__(self, message: str, status: int):
        super().__init__(message, forbidden=status == 403)
        self.status = status


class AddressUnverified(InvitationError):
    """An address-bound invitation, and nothing yet proves the account owns that address."""

    def __init__(self):
        super().__init__("Confirm your email address to join.", 403)


def accept_invitation(
    user, token: str, *, address_verified: bool = False
) -> tuple[Membership, bool]:
    """Join the invitation's team; (membership, False) when the user already belongs to it.

    An invitation for an email address also needs proof that the account owns the address:
    a confirmation link mailed to it, or a team admin confirming the account.
    """
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update().select_related("team").filter(token=token)
        ).first()
        if invitation is None:
            raise InvitationError("This invitation link is not valid: ask for a new one.", 404)
        existing = Membership.objects.filter(team=invitation.team, user=user).first()
        if existing is not None:
            return existing, False
        check_usable(invitation, user)
        if invitation.email and not address_verified:
            raise AddressUnverified()
        membership = Membership.objects.create(
            team=invitation.team, user=user, role=invitation.role
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        audit(
            invitation.team,
            user,
            AuditAction.INVITE_ACCEPT,
            f"{_name(user)} joined as {invitation.role}",
            invitation_id=invitation.pk,
        )
    return membership, True


ADDRESS_SALT = "chatapp.teams.invitation-address"
ADDRESS_LINK_MAX_AGE = timedelta(days=3)


def address_signature(invitation: Invitation, user) -> str:
    """Proof, for a link mailed to the invitation's address, that its reader got the mail."""
    value = {"t": invitation.token, "u": user.pk, "e": invitation.email.lower()}
    return signing.dumps(value, salt=ADDRESS_SALT, compress=True)


def address_verified(invitation: Invitation, user, signature: str) -> bool:
    try:
        value = signing.loads(signature, salt=ADDRESS_SALT, max_age=ADDRESS_LINK_MAX_AGE)
    except signing.BadSignature:
        return False
    expected = {"t": invitation.token, "u": user.pk, "e": invitation.email.lower()}
    return value == expected and (user.email or "").strip().lower() == expected["e"]


# One confirmation link an address per this long, however often Accept is pressed: anyone
# could invite an address from their own team and press it again and again.
ADDRESS_MAIL_PAUSE = timedelta(minutes=5)


def email_address_confirmation(invitation: Invitation, user, link: str) -> bool:
    """Mail the confirmation link to the invitation's address; False, nothing mailed, when one
    went there within the pause. OSError when the mail server fails (the pause is not taken)."""
    return core_actions.mail_unless_paused(
        "invitation_address",
        invitation.email,
        ADDRESS_MAIL_PAUSE,
        f"Confirm your email to join {one_line(invitation.team.name)} on Llama team chat",
        f"{user.get_username()} asked to join {invitation.team.name} with the invitation sent"
        f" to this address. Open this link while signed in as {user.get_username()} to"
        f" confirm the address and join (valid for 3 days):\n{link}\n\n"
        "If that was not you, ignore this email.",
    )


def claim_invitation(user, invitation: Invitation) -> None:
    """Without email, the account asks to join; a team admin confirms it (confirm_claim)."""
    with transaction.atomic():
        check_usable(invitation, user)
        Invitation.objects.filter(pk=invitation.pk).update(
            claimed_by=user, claimed_at=timezone.now()
        )
        audit(
            invitation.team,
            user,
            AuditAction.INVITE_CLAIM,
            f"{_name(user)} asked to join with the invitation for {invitation.email}",
            invitation_id=invitation.pk,
        )


def confirm_claim(actor, invitation: Invitation) -> Membership:
    """A team admin vouches that the claiming account owns the invitation's address."""
    if invitation.claimed_by is None:
        raise InvitationError("Nobody has asked to join with this invitation yet.", 400)
    membership, joined = accept_invitation(
        invitation.claimed_by, invitation.token, address_verified=True
    )
    if not joined:  # joined another way since: this invitation changes nothing
        raise InvitationError(
            f"{_name(invitation.claimed_by)} is already a member of this team: nothing to"
            " confirm. Revoke the invitation if it is no longer needed.",
            400,
        )
    audit(
        invitation.team,
        actor,
        AuditAction.INVITE_CONFIRM,
        f"{_name(actor)} confirmed {_name(invitation.claimed_by)} for {invitation.email}",
        invitation_id=invitation.pk,
    )
    return membership


def check_usable(invitation: Invitation, user) -> None:
    if invitation.accepted_at is not None:
        raise InvitationError("This invitation has already been used: ask for a new one.", 410)
    if invitation.expires_at <= timezone.now():
        raise InvitationError("This invitation has expired: ask for a new one.", 410)
    if not invitation.maker_still_invites():
        raise InvitationError(
            "This invitation was made by someone who is no longer an owner or admin of the"
            " team: ask for a new one.",
            410,
        )
    if invitation.email and invitation.email.lower() != (user.email or "").strip().lower():
        raise InvitationError(
            "This invitation was sent to a different email address:"
            " log in with the account that uses that address, or ask for a new invitation.",
            403,
        )


def _owner_count(team: Team | int) -> int:
    # Locks the owners' rows so two concurrent changes cannot both remove "another" owner.
    return len(
        Membership.objects.select_for_update().filter(team=team, role=Role.OWNER).values("pk")
    )


def _lock_members(team: Team | int) -> None:
    """Queue changes to the team's roles and members, in this process or another, before any
    of its membership rows is locked: two owners changing each other at once wait in turn
    rather than each lock one row and deadlock on the other's."""
    # NO KEY: new conversations and audit events of the team do not wait for it.
    lock_rows(Team.objects.filter(pk=getattr(team, "pk", team)), no_key=True)


def _current(membership: Membership) -> Membership:
    """The membership as it is now (its role may have changed since the page read it)."""
    current = Membership.objects.select_related("team", "user").filter(pk=membership.pk).first()
    if current is None:
        raise ActionError("That membership has just changed or ended: reload the page.")
    return current


def _check_can_act_on(actor_membership: Membership, target: Membership) -> None:
    if actor_membership.role != Role.OWNER and target.role == Role.OWNER:
        raise ActionError("Only owners can change or remove an owner.", forbidden=True)
    # As they are now: the page that let them act may predate their own demotion.
    if actor_membership.role not in (Role.OWNER, Role.ADMIN):
        raise ActionError("Only the team's owners and admins can do this.", forbidden=True)


def change_role(actor_membership: Membership, target: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise ActionError("Choose a role: owner, admin or member.")
    with transaction.atomic():
        _lock_members(target.team_id)
        actor_membership, target = _current(actor_membership), _current(target)
        _check_can_act_on(actor_membership, target)
        if role == Role.OWNER and actor_membership.role != Role.OWNER:
            raise ActionError("Only owners can make someone an owner.", forbidden=True)
        old = target.role
        if old == role:
            return target
        if old == Role.OWNER and _owner_count(target.team_id) <= 1:
            raise ActionError("A team needs an owner: make someone else an owner first.")
        target.role = role
        target.save(update_fields=["role"])
        audit(
            actor_membership.team,
            actor_membership.user,
            AuditAction.ROLE_CHANGE,
            f"{_name(actor_membership.user)} changed {_name(target.user)} from {old} to {role}",
            user=_name(target.user),
            old=old,
            new=role,
        )
    return target


def remove_member(actor_membership: Membership, target: Membership) -> None:
    if target.pk == actor_membership.pk:
        raise ActionError("To leave the team, use Leave team.")
    with transaction.atomic():
        _lock_members(target.team_id)
        actor_membership, target = _current(actor_membership), _current(target)
        _check_can_act_on(actor_membership, target)
        if target.role == Role.OWNER and _owner_count(target.team_id) <= 1:
            raise ActionError("A team needs an owner: make someone else an owner first.")
        audit(
            actor_membership.team,
            actor_membership.user,
            AuditAction.MEMBER_REMOVE,
            f"{_name(actor_membership.user)} removed {_name(target.user)} ({target.role})",
            user=_name(target.user),
            role=target.role,
        )
        _end_membership(target)


def leave_team(membership: Membership) -> None:
    with transaction.atomic():
        _lock_members(membership.team_id)
        membership = _current(membership)
        if membership.role == Role.OWNER and _owner_count(membership.team_id) <= 1:
            raise ActionError(
                "You are the last owner: make someone else an owner before you leave."
            )
        audit(
            membership.team,
            membership.user,
            AuditAction.MEMBER_LEAVE,
            f"{_name(membership.user)} left the team",
            user=_name(membership.user),
        )
        _end_membership(membership)


def _end_membership(membership: Membership) -> None:
    membership.delete()
    # A personal team its owner handed over and left is the others' team now; its former
    # owner gets a new personal team when they need one (ensure_personal_team).
    Team.objects.filter(pk=membership.team_id, personal_owner=membership.user_id).update(
        personal_owner=None
    )


# Memberships in the admin site (chatapp.teams.admin): audited as on the team's pages; the
# owner rules are a site admin's to break, to mend a team that has lost its owners.


def admin_save_membership(actor, membership: Membership) -> None:
    with transaction.atomic():
        stored = Membership.objects.filter(pk=membership.pk) if membership.pk else None
        old = stored.values_list("role", flat=True).first() if stored is not None else None
        membership.save()
        who, role = _name(membership.user), membership.role
        if old is None:
            summary = f"{_name(actor)} added {who} as {role} in the admin site"
            audit(membership.team, actor, AuditAction.MEMBER_ADD, summary, user=who, role=role)
        elif old != role:
            audit(
                membership.team,
                actor,
                AuditAction.ROLE_CHANGE,
                f"{_name(actor)} changed {who} from {old} to {role} in the admin site",
                user=who,
                old=old,
                new=role,
            )


def admin_remove_membership(actor, membership: Membership) -> None:
    with transaction.atomic():
        who, role = _name(membership.user), membership.role
        audit(
            membership.team,
            actor,
            AuditAction.MEMBER_REMOVE,
            f"{_name(actor)} removed {who} ({role}) in the admin site",
            user=who,
            role=role,
        )
        membership.delete()


# Teams in the admin site: created, renamed and deleted there, audited as on the team pages.


def admin_save_team(actor, team: Team) -> None:
    with transaction.atomic():
        stored = Team.objects.filter(pk=team.pk).select_related("personal_owner").first()
        team.save()
        if stored is None:
            summary = f"{_name(actor)} created the team {team.name} in the admin site"
            audit(team, actor, AuditAction.TEAM_CREATE, summary)
        elif stored.name != team.name:
            audit(
                team,
                actor,
                AuditAction.TEAM_RENAME,
                f"{_name(actor)} renamed the team {stored.name} to {team.name} in the admin site",
                old=stored.name,
                new=team.name,
            )
        old_owner = stored.personal_owner if stored is not None else None
        if team.personal_owner_id != getattr(old_owner, "pk", None):
            _audit_personal_owner(actor, team, old_owner, team.personal_owner)


def _audit_personal_owner(actor, team: Team, old, new) -> None:
    old_name, new_name = (user.get_username() if user else None for user in (old, new))
    if new_name is None:
        change = f"no longer the personal team of {old_name}"
    else:
        change = f"the personal team of {new_name}" + (f" instead of {old_name}" if old else "")
    audit(
        team,
        actor,
        AuditAction.TEAM_PERSONAL_OWNER,
        f"{_name(actor)} made the team {team.name} {change} in the admin site",
        old=old_name,
        new=new_name,
    )


def admin_delete_team(actor, team: Team) -> None:
    """The event keeps the team's name; deleting the team empties only its link."""
    with transaction.atomic():
        members = team.memberships.count()
        audit(
            team,
            actor,
            AuditAction.TEAM_DELETE,
            f"{_name(actor)} deleted the team {team.name} ({counted(members, 'member')})"
            " in the admin site",
            name=team.name,
            members=members,
        )
        team.delete()


# People deleted, in the admin site or by themselves: the teams they leave behind.


# Checks the apps above this one register (in their AppConfig.ready): given teams' ids and
# the users about to be deleted, the ids of the teams that hold something of someone else,
# such as the conversations a former member keeps to read after leaving.
_KEEPERS: list[Callable[[list[int], set[int]], set[int]]] = []


def keep_teams_holding(check: Callable[[list[int], set[int]], set[int]]) -> None:
    """A personal team that holds something of someone else stays when its owner is deleted."""
    _KEEPERS.append(check)


# Checks the apps above this one register too: given the users about to be deleted, the ids of
# the teams where something of theirs goes with them, such as their conversations.
_DATA_IN: list[Callable[[set[int]], set[int]]] = []


def note_teams_with_data_of(check: Callable[[set[int]], set[int]]) -> None:
    """Deleting a user takes what `check` finds of theirs from those teams: a hold keeps it."""
    _DATA_IN.append(check)


def _teams_losing(users) -> set[int]:
    """The teams deleting these users would take something from (or delete whole)."""
    ids = {user.pk for user in users}
    teams = {team.pk for team in personal_teams_deleted_with(users)}
    for check in _DATA_IN:
        teams |= check(ids)
    return teams


def held_teams_losing(users) -> list[Team]:
    """The teams under legal hold that deleting these users would take something from."""
    return list(Team.objects.filter(pk__in=_teams_losing(users)).held().order_by("name", "pk"))


def personal_teams_deleted_with(users) -> list[Team]:
    """The personal teams of these users that nobody else is in, and that hold nothing of
    anyone else's: they go with their owners."""
    ids = {user.pk for user in users}
    others = Membership.objects.filter(team=OuterRef("pk")).exclude(user__in=ids)
    teams = list(Team.objects.filter(personal_owner__in=ids).exclude(Exists(others)).order_by("pk"))
    kept: set[int] = set()
    for holds in _KEEPERS:
        kept |= holds([team.pk for team in teams], ids)
    return [team for team in teams if team.pk not in kept]


def admin_release_teams(actor, users) -> None:
    """Before these users are deleted, in the same transaction: a personal team with other
    people in it is handed over to them, as when its owner leaves it, and every team they
    leave keeps an owner. (Their memberships go with them.)"""
    _lock_teams_of(users)
    _release_teams(actor, users, own=False)


def own_deletion_refusal(user) -> str:
    """Why this person may not delete their own account now, or "": a team they alone own
    would be left to others without their say, or a legal hold keeps what would go."""
    owned = Membership.objects.filter(team=OuterRef("team"), role=Role.OWNER).exclude(user=user)
    others = Membership.objects.filter(team=OuterRef("team")).exclude(user=user)
    alone = (
        user.memberships.filter(role=Role.OWNER)
        .exclude(Exists(owned))
        .filter(Exists(others))
        .select_related("team")
        .order_by("team__name", "team_id")
    )
    alone_in = [membership.team.name for membership in alone]
    if alone_in:
        return (
            f"You are the only owner of {', '.join(alone_in)}, where other people are members:"
            " make someone else an owner there (on the team's Members page) first, or ask a"
            " site admin to delete the team."
        )
    held = held_teams_losing([user])
    going = {team.pk for team in personal_teams_deleted_with([user])}
    for team in held:
        if team.pk in going:
            return (
                f"Your team {team.name} would be deleted with your account, and it is under"
                " legal hold, which keeps everything in it: lift the hold in its policy first."
            )
    if not held:
        return ""
    names = ", ".join(team.name for team in held)
    return (
        f"{names} {'is' if len(held) == 1 else 'are'} under legal hold, which keeps your"
        " conversations there: your account can be deleted once the team's owners lift the"
        " hold in its policy."
    )


def held_notes(teams) -> list[str]:
    """For the admin site's deletion pages: a line per team of `teams` under legal hold,
    which Django shows as protected, deleting nothing."""
    held = Team.objects.filter(pk__in=[team.pk for team in teams]).held().order_by("pk")
    return [f"{team.name}: under legal hold (lift it in the team's policy first)" for team in held]


def release_own_teams(user) -> None:
    """As admin_release_teams, for a person deleting their own account; refused (ActionError,
    nothing changed) while own_deletion_refusal gives a reason, checked under the teams' locks."""
    _lock_teams_of([user])
    # A hold put on meanwhile waits for this deletion, or stops it.
    lock_rows(TeamPolicy.objects.filter(team_id__in=_teams_losing([user])))
    refusal = own_deletion_refusal(user)
    if refusal:
        raise ActionError(refusal)
    _release_teams(user, [user], own=True)


def _lock_teams_of(users) -> None:
    ids = {user.pk for user in users}
    involved = Team.objects.filter(Q(personal_owner__in=ids) | Q(memberships__user__in=ids))
    # In one order, so two deletions cannot each hold a team the other waits for.
    for team_id in involved.values_list("pk", flat=True).distinct().order_by("pk"):
        _lock_members(team_id)


def _release_teams(actor, users, *, own: bool) -> None:
    ids = {user.pk for user in users}
    involved = Team.objects.filter(Q(personal_owner__in=ids) | Q(memberships__user__in=ids))
    teams = list(involved.distinct().select_related("personal_owner").order_by("pk"))
    lonely = {team.pk for team in personal_teams_deleted_with(users)}
    for team in teams:
        if team.pk in lonely:
            _delete_with_owner(actor, team, own)
        else:
            _leave_deleted(actor, team, ids, own)


def _deleted(actor, who: str, own: bool, role: str = "") -> str:
    """How the trail says that an account was deleted, by whom and where."""
    if own:
        return f"{who}{f' ({role})' if role else ''} deleted their own account"
    return f"{_name(actor)} deleted the user {who}{f' ({role})' if role else ''} in the admin site"


def _delete_with_owner(actor, team: Team, own: bool) -> None:
    """Audited as admin_delete_team is; the event keeps the team's name."""
    owner, members = _name(team.personal_owner), team.memberships.count()
    audit(
        team,
        actor,
        AuditAction.TEAM_DELETE,
        f"{_deleted(actor, owner, own)}, and their personal team"
        f" {team.name} ({counted(members, 'member')}) with them",
        name=team.name,
        members=members,
        user=owner,
    )
    team.delete()


def _leave_deleted(actor, team: Team, ids: set[int], own: bool) -> None:
    leaving = list(team.memberships.filter(user__in=ids).select_related("user").order_by("pk"))
    handed_over = team.personal_owner_id in ids
    for membership in leaving:
        who, role = _name(membership.user), membership.role
        summary = _deleted(actor, who, own, role)
        if membership.user_id == team.personal_owner_id:
            summary += ": the team is no longer their personal team"
        audit(team, actor, AuditAction.MEMBER_REMOVE, summary, user=who, role=role)
    if handed_over:  # the others' team now, as _end_membership leaves it
        Team.objects.filter(pk=team.pk).update(personal_owner=None)
    staying = team.memberships.exclude(user__in=ids).select_related("user")
    if not any(m.role == Role.OWNER for m in leaving) or staying.filter(role=Role.OWNER).exists():
        return
    # The team's last owners are deleted: its longest-standing admin, else member, owns it now.
    heir = (
        staying.filter(role=Role.ADMIN).order_by("created_at", "pk").first()
        or staying.order_by("created_at", "pk").first()
    )
    if heir is None:
        return
    old, heir.role = heir.role, Role.OWNER
    heir.save(update_fields=["role"])
    who = _name(heir.user)
    audit(
        team,
        actor,
        AuditAction.ROLE_CHANGE,
        f"{_name(actor)} deleted the team's last owner in the admin site: {who} is an owner now",
        user=who,
        old=old,
        new=Role.OWNER,
    )


# System prompts.


def save_starters(actor, team: Team, suggestions: list[str]) -> None:
    """The questions an empty chat in the team offers."""
    with transaction.atomic():
        stored, _ = TeamPolicy.objects.get_or_create(team=team)
        stored.starter_suggestions = suggestions
        stored.save(update_fields=["starter_suggestions", "updated_at"])
        summary = f"{_name(actor)} changed the starter suggestions"
        audit(team, actor, AuditAction.PROMPT_UPDATE, summary, starter_suggestions=suggestions)


def save_prompt(
    actor,
    team: Team,
    prompt: SystemPrompt | None = None,
    *,
    name: str,
    content: str,
    is_default: bool = False,
    locked: bool = False,
    position: int | None = None,
    response_format: str = ResponseFormat.TEXT,
    json_schema: JsonSchema | None = None,
    seen: str = "",
) -> SystemPrompt:
    """Create a prompt, or edit one keeping its previous text as a SystemPromptVersion.

    `position` places it in the team's list (the admin site sets it; pages use move_prompt).
    `seen`: the prompt's state() as the edit page read it; changed since, nothing is saved.
    """
    try:
        with transaction.atomic():
            if is_default:
                # Two prompts made default at once queue here, so the second clears the
                # first instead of meeting the one-default constraint. NO KEY: new rows of
                # the team (conversations, audit events) do not wait for it.
                lock_rows(Team.objects.filter(pk=team.pk), no_key=True)
            prompt, summary = _apply_prompt(actor, team, prompt, name, content, seen)
            if is_default:  # one default per team: clear the old one first
                team.system_prompts.filter(is_default=True).exclude(pk=prompt.pk).update(
                    is_default=False
                )
            prompt.is_default, prompt.locked = is_default, locked
            if json_schema is not None:
                _check_schema_of(team, json_schema)
            prompt.response_format, prompt.json_schema = response_format, json_schema
            if position is not None:
                prompt.position = position
            prompt.save()
            audit(
                team,
                actor,
                AuditAction.PROMPT_UPDATE if summary else AuditAction.PROMPT_CREATE,
                summary or f"{_name(actor)} created the prompt {name}",
                prompt_id=prompt.pk,
                name=name,
                version=prompt.version,
                is_default=is_default,
                locked=locked,
                response_format=response_format,
                json_schema_id=json_schema.pk if json_schema else None,
            )
    except IntegrityError:
        raise ActionError(f"A prompt named {name!r} already exists in this team.") from None
    return prompt


def _check_schema_of(team: Team, json_schema: JsonSchema) -> None:
    if json_schema.team_id != team.pk:
        raise ActionError("That JSON schema belongs to another team.")
    # Held until the prompt names it: a deletion starting meanwhile waits, then unlinks it.
    if not locked_if_there(JsonSchema.objects.filter(pk=json_schema.pk), no_key=True):
        raise Gone(
            f"The JSON schema {json_schema.name} was deleted meanwhile, by someone else:"
            " choose another answer format."
        )


def _apply_prompt(actor, team, prompt, name, content, seen="") -> tuple[SystemPrompt, str]:
    if prompt is None:
        limit = settings.TEAM_MAX_SYSTEM_PROMPTS
        check_room(team, team.system_prompts.all(), limit, "too_many_prompts", "system prompts")
        last = team.system_prompts.aggregate(last=Max("position"))["last"]
        new = SystemPrompt(team=team, position=0 if last is None else last + 1)
        new.name, new.content = name, content
        return new, ""
    stored = SystemPrompt.objects.select_for_update().filter(pk=prompt.pk, team=team).first()
    if stored is None:
        raise Gone(
            "This prompt was deleted meanwhile, by someone else: your changes were not saved."
        )
    if seen and stored.state() != seen:
        raise Changed(
            "This prompt was changed meanwhile, by someone else (its text, default, lock or"
            " answer format): nothing was saved. Check the fields below, then save again."
        )
    prompt = stored
    if (prompt.name, prompt.content) != (name, content):
        SystemPromptVersion.objects.create(
            prompt=prompt,
            version=prompt.version,
            name=prompt.name,
            content=prompt.content,
            edited_by=actor,
        )
        prompt.version += 1
    prompt.name, prompt.content = name, content
    return prompt, f"{_name(actor)} edited the prompt {name} (now version {prompt.version})"


def delete_prompt(actor, prompt: SystemPrompt) -> None:
    with transaction.atomic():
        # Its row first, as a send naming it holds it (start_reply): the conversations naming
        # it, then read, include that send's.
        lock_rows(SystemPrompt.objects.filter(pk=prompt.pk))
        if not SystemPrompt.objects.filter(pk=prompt.pk).delete()[0]:
            return  # deleted meanwhile: the trail records that deletion, by whoever made it
        audit(
            prompt.team,
            actor,
            AuditAction.PROMPT_DELETE,
            f"{_name(actor)} deleted the prompt {prompt.name}",
            prompt_id=prompt.pk,
            name=prompt.name,
            version=prompt.version,
        )


def move_prompt(actor, prompt: SystemPrompt, offset: int) -> None:
    """Move a prompt up (-1) or down (+1) in the team's list."""
    with transaction.atomic():
        prompts = list(SystemPrompt.objects.for_team(prompt.team).select_for_update())
        index = next((i for i, p in enumerate(prompts) if p.pk == prompt.pk), None)
        if index is None:
            raise Gone(f"The prompt {prompt.name} was deleted meanwhile, by someone else.")
        target = index + offset
        if not 0 <= target < len(prompts):
            return
        prompts[index], prompts[target] = prompts[target], prompts[index]
        for position, item in enumerate(prompts):
            item.position = position
        SystemPrompt.objects.bulk_update(prompts, ["position"])
        audit(
            prompt.team,
            actor,
            AuditAction.PROMPT_REORDER,
            f"{_name(actor)} moved the prompt {prompt.name} {'up' if offset < 0 else 'down'}",
            prompt_id=prompt.pk,
        )


# Model policy and provider.


def hold_policy(team: Team) -> None:
    """Hold the team's policy until the transaction ends: a change read, checked and saved
    within it goes in turn with any other, rather than saving over it what it read before."""
    TeamPolicy.objects.select_for_update().get_or_create(team=team)


def policy_state(policy: TeamPolicy) -> str:
    """The policy as its page shows it, as a state_token."""
    return state_token(policy, POLICY_FIELDS)


def set_policy(actor, team: Team, values: dict, seen: str = "") -> TeamPolicy:
    """Save the team's model policy; the audit event lists what changed. `seen`: the
    policy_state the page read; changed since, nothing is saved."""
    with transaction.atomic():
        policy, _ = TeamPolicy.objects.select_for_update().get_or_create(team=team)
        if seen and policy_state(policy) != seen:
            raise Changed(
                "The policy was changed meanwhile, by someone else: nothing was saved. Check"
                " the fields below (they show what you sent), then save again."
            )
        changes = {}
        for name in POLICY_FIELDS:
            old, new = getattr(policy, name), values.get(name, getattr(policy, name))
            if old != new:
                changes[name] = [old, new]
                setattr(policy, name, new)
        if changes:
            policy.save()
            fields = ", ".join(_policy_change(name, *values) for name, values in changes.items())
            audit(
                team,
                actor,
                AuditAction.POLICY_UPDATE,
                f"{_name(actor)} changed {fields}",
                changes=changes,
            )
        if "monthly_token_budget" in changes:
            # A budget set below what the team used refuses every answer: none would end to
            # tell the owners it is crossed.
            note_budget_thresholds(team)
    return policy


def _policy_change(name: str, old, new) -> str:
    """One changed setting for the audit page, which shows only the summary: "monthly token
    budget from 100,000 to 200,000"; a list (models, categories, patterns) by its name alone,
    the details holding it."""
    label = name.replace("_", " ")
    if isinstance(old, list | dict) or isinstance(new, list | dict):
        return label
    return f"{label} from {_policy_value(old)} to {_policy_value(new)}"


def _policy_value(value) -> str:
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:,}" if isinstance(value, int) else str(value)


def set_provider(
    actor,
    team: Team,
    *,
    base_url: str,
    protocol: str,
    api_key: str = "",
    clear_key: bool = False,
) -> TeamProvider:
    """Save the team's provider. An empty api_key keeps the stored one, except that a new
    server address needs the key entered again (so a stored key never goes to a new server)."""
    with transaction.atomic():
        provider, _ = TeamProvider.objects.select_for_update().get_or_create(team=team)
        if problem := provider_change_problem(provider, base_url, api_key, clear_key):
            raise ActionError(problem)
        old_url, old_protocol = provider.base_url, provider.protocol
        provider.base_url, provider.protocol = base_url, protocol
        if api_key:
            provider.api_key_encrypted = crypto.encrypt(api_key)
        elif clear_key:
            provider.api_key_encrypted = ""
        provider.save()
        _audit_provider(actor, team, provider, old_url, old_protocol, api_key, clear_key)
    return provider


def provider_change_problem(
    provider: TeamProvider | None, base_url: str, api_key: str, clear_key: bool
) -> str | None:
    """Why a provider change is refused, or None: a stored key never goes to a new server."""
    has_key = provider is not None and provider.has_key
    old_url = provider.base_url if provider is not None else ""
    if base_url != old_url and has_key and not api_key and not clear_key:
        return "Enter the API key again when you change the server address."
    if base_url and not api_key and (clear_key or not has_key):
        return "Enter the API key for this server: a team's server needs its key."
    return None


def _audit_provider(actor, team, provider, old_url, old_protocol, api_key, clear_key) -> None:
    who = _name(actor)
    if (old_url, old_protocol) != (provider.base_url, provider.protocol):
        audit(
            team,
            actor,
            AuditAction.PROVIDER_UPDATE,
            f"{who} set the server to {provider.base_url or 'the site default'}"
            f" ({provider.get_protocol_display()})",
            base_url=[old_url, provider.base_url],
            protocol=[old_protocol, provider.protocol],
        )
    if api_key:
        audit(team, actor, AuditAction.KEY_SET, f"{who} set a new API key")
    elif clear_key:
        audit(team, actor, AuditAction.KEY_CLEAR, f"{who} removed the team's API key")


def personal_team_to_create(user) -> Team:
    """The personal team `ensure_personal_team` would create for the user, unsaved: for a page
    that names it before anything creates it."""
    return Team(name=f"{user.get_username()}'s team", personal_owner=user)


def ensure_personal_team(user) -> Team:
    """The user's personal team, created (with the user as owner) the first time it is needed."""
    team = Team.objects.filter(personal_owner=user).first()
    if team and Membership.objects.filter(team=team, user=user).exists():
        return team
    if team:  # its owner's membership ended outside leave_team (the admin site): not theirs
        Team.objects.filter(pk=team.pk).update(personal_owner=None)
    try:
        with transaction.atomic():
            team = personal_team_to_create(user)
            team.save()
            Membership.objects.create(team=team, user=user, role=Role.OWNER)
            budget = settings.PERSONAL_TEAM_MONTHLY_TOKEN_BUDGET
            if budget is not None:  # so an open signup cannot spend the site's key unbounded
                TeamPolicy.objects.create(team=team, monthly_token_budget=budget)
    except IntegrityError:  # created concurrently by another request
        team = Team.objects.get(personal_owner=user)
    return team


# --- answers' bookkeeping --------------------------------------------------------------------


def admit_request(user, team: Team, policy: TeamPolicy) -> None:
    """Count one request about to go upstream against the team's per-minute limit.

    Raises PolicyError(rate_limited) and counts nothing when the user is at the limit.
    """
    per_minute = policy.rate_limit_per_minute
    if not per_minute:
        return
    now = timezone.now()
    window = RecentRequest.objects.filter(user=user, team=team)
    with transaction.atomic():
        # Locking the membership row serialises one user's requests across processes.
        lock_rows(Membership.objects.filter(user=user, team=team))
        window.filter(created_at__lte=now - RATE_WINDOW).delete()
        if window.count() >= per_minute:
            wait = seconds_until_admitted(user, team, per_minute)
            message = (
                f"You can send {per_minute} message{'s' if per_minute != 1 else ''} a minute"
                f" in this team: try again in {wait} second{'s' if wait != 1 else ''}."
            )
            raise PolicyError("rate_limited", message)
        RecentRequest.objects.create(user=user, team=team, created_at=now)


def delete_old_requests(now: datetime) -> int:
    """Delete the rate limit's rows older than its window: a user who stops sending would
    otherwise keep theirs, which `admit_request` prunes only on that user's next request."""
    old = RecentRequest.objects.filter(created_at__lte=now - RATE_WINDOW)
    if not old.exists():  # an empty delete would still open a write transaction
        return 0
    return old.delete()[0]


def hold_tokens(team: Team, user, tokens: int, lifetime: float) -> int:
    """Hold an API answer's tokens against the team's budgets while it streams (`quota`);
    returns the hold's id. It counts for `lifetime` seconds at most, should its process die."""
    expires_at = timezone.now() + timedelta(seconds=lifetime)
    hold = BudgetHold.objects.create(
        team=team,
        user=user,
        tokens=tokens,
        expires_at=expires_at,
        server_process=processes.token(),
    )
    return hold.pk


def release_hold(hold_id: int) -> None:
    BudgetHold.objects.filter(pk=hold_id).delete()


def release_holds_of(server_process: str) -> int:
    """Delete the holds of the API answers the server process with this token was relaying
    (it has exited): they held tokens, they used none that anything here counted."""
    if not server_process:
        return 0
    return BudgetHold.objects.filter(server_process=server_process).delete()[0]


def delete_expired_holds(now: datetime) -> int:
    """Delete the holds of answers whose process died (they count no more already)."""
    expired = BudgetHold.objects.filter(expires_at__lte=now)
    if not expired.exists():  # an empty delete would still open a write transaction
        return 0
    return expired.delete()[0]


# TeamUsage's row for the day (its unique key, team_usage_unique_day_key), made or added to.
USAGE_UPSERT = """
INSERT INTO teams_teamusage
    (team_id, user_id, model, day, api_key_ref, prompt_tokens, completion_tokens, requests)
VALUES (%s, %s, %s, %s, %s, %s, %s, 1)
ON CONFLICT (team_id, user_id, model, day, api_key_ref) DO UPDATE SET
    prompt_tokens = teams_teamusage.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = teams_teamusage.completion_tokens + excluded.completion_tokens,
    requests = teams_teamusage.requests + 1
"""
# And the member's total for the month (TeamMonthUsage, its unique key team_month_usage_unique).
MONTH_USAGE_UPSERT = """
INSERT INTO teams_teammonthusage (team_id, month, user_id, prompt_tokens, completion_tokens)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (team_id, month, user_id) DO UPDATE SET
    prompt_tokens = teams_teammonthusage.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = teams_teammonthusage.completion_tokens + excluded.completion_tokens
"""


def record_usage(
    team: Team,
    user,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    api_key: ApiKey | None = None,
    policy: TeamPolicy | None = None,
    day: date | None = None,
) -> None:
    """Add an answer's token counts to the team's usage for today (or `day`), and to the
    person's total for the month, which the budgets read.

    One statement each whichever process writes first: an insert that adds to the row when
    it is there already (`INSERT ... ON CONFLICT DO UPDATE`, in SQLite and PostgreSQL alike).
    Answers through the OpenAI-compatible API are counted per key as well. `policy`: the
    team's as the answer was planned under, when the caller has it (see
    `note_budget_thresholds`)."""
    prompt_tokens = max(0, int(prompt_tokens or 0))
    completion_tokens = max(0, int(completion_tokens or 0))
    day = day or timezone.now().date()
    when, month = (connection.ops.adapt_datefield_value(d) for d in (day, month_start(day)))
    key_ref = api_key.pk if api_key is not None else 0
    # No savepoint of its own: an answer's end writes its usage in the answer's transaction.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(
            USAGE_UPSERT,
            [team.pk, user.pk, model, when, key_ref, prompt_tokens, completion_tokens],
        )
        cursor.execute(
            MONTH_USAGE_UPSERT, [team.pk, month, user.pk, prompt_tokens, completion_tokens]
        )
    note_budget_thresholds(team, policy)


def take_back_usage(
    team_id: int, user_id: int, model: str, day: date, prompt_tokens: int, completion_tokens: int
) -> None:
    """Take back what `record_usage` counted for a chat answer on `day`, its request with it:
    the answer's real figures are counted in its place."""
    rows = TeamUsage.objects.filter(
        team_id=team_id, user_id=user_id, model=model, day=day, api_key_ref=0
    )
    with transaction.atomic():
        row = rows.select_for_update().values("prompt_tokens", "completion_tokens").first()
        if row is None:
            return
        # No more than the row holds, and the month's total loses just what the row loses.
        prompt = min(prompt_tokens, row["prompt_tokens"])
        completion = min(completion_tokens, row["completion_tokens"])
        rows.update(
            prompt_tokens=F("prompt_tokens") - prompt,
            completion_tokens=F("completion_tokens") - completion,
            requests=Greatest(F("requests") - 1, 0),
        )
        rows.filter(requests=0, prompt_tokens=0, completion_tokens=0).delete()
        TeamMonthUsage.objects.filter(
            team_id=team_id, user_id=user_id, month=month_start(day)
        ).update(
            prompt_tokens=Greatest(F("prompt_tokens") - prompt, 0),
            completion_tokens=Greatest(F("completion_tokens") - completion, 0),
        )


def note_budget_thresholds(team: Team, planned: TeamPolicy | None = None) -> list[BudgetNotice]:
    """Tell the owners, once a month per threshold, that the team crossed 80% or 100% of its
    monthly budget: a notice on their pages, an audit event, and an e-mail when e-mail is set
    (one, of the highest, when both are crossed at once).

    `planned`: the team's policy when the answer began. Its budget may have changed since, so
    a team that had one reads it again; one that had none pays no read (a budget set while the
    answer ran is first read when a later answer ends)."""
    if planned is not None and not planned.monthly_token_budget:
        return []
    policy = TeamPolicy.objects.filter(team=team).first()
    if policy is None or not policy.monthly_token_budget:
        return []
    today = timezone.now().date()
    used, budget, percents = budgets.crossed(team, policy, today)
    made = []
    for percent in percents:
        try:
            with transaction.atomic():
                notice = BudgetNotice.objects.create(
                    team=team, month=today.replace(day=1), percent=percent, budget=budget, used=used
                )
                audit(
                    team,
                    None,
                    AuditAction.BUDGET_THRESHOLD,
                    f"{team.name} reached {percent}% of its monthly budget"
                    f" ({used:,} of {budget:,} tokens)",
                    percent=percent,
                    used=used,
                    budget=budget,
                )
        except IntegrityError:  # another process noted it first
            continue
        made.append(notice)
    if made:  # crossing 80% and 100% at once: "passed 80%" would only repeat the whole budget's
        transaction.on_commit(partial(email_budget_notice, made[-1]))
    return made


def email_budget_notice(notice: BudgetNotice) -> None:
    """E-mail the team's owners about a crossed threshold, when the site sends e-mail."""
    if not settings.EMAIL_URL:
        return
    owners = Membership.objects.filter(
        team=notice.team, role=Role.OWNER, user__is_active=True
    ).select_related("user")
    addresses = [m.user.email for m in owners if m.user.email]
    if not addresses:
        return
    state = "has used its whole" if notice.percent >= 100 else f"has used {notice.percent}% of its"
    try:
        send_mail(
            f"{one_line(notice.team.name)} {state} monthly token budget",
            f"{notice.team.name} {state} monthly token budget on Llama team chat:"
            f" {notice.used:,} of {notice.budget:,} tokens."
            + (
                " New messages are refused until the month ends or the budget is raised on the"
                " team's policy page."
                if notice.percent >= 100
                else ""
            ),
            None,
            addresses,
        )
    except Exception:  # the notice on the page stands; a mail server's failure is only logged
        log.warning("Could not e-mail the budget notice of team %s", notice.team_id)


# Safety: what Llama Guard flagged, and the reviewers' decisions.


def flag_message(team: Team, author, message_id: int, finding: Finding) -> SafetyFlag:
    """Put a flagged question or answer on the team's review queue, once: a question is
    screened again with each answer regenerated to it. Its flag gathers the categories every
    screening counted, and is blocked once one of them blocked it."""
    with transaction.atomic():
        flag = (
            SafetyFlag.objects.select_for_update()
            .filter(message_id=message_id, stage=finding.stage)
            .first()
        )
        if flag is None:
            return SafetyFlag.objects.create(
                team=team,
                author=author,
                message_id=message_id,
                stage=finding.stage,
                blocked=finding.blocked,
                categories=list(finding.categories),
            )
        found = {*flag.categories, *finding.categories}
        flag.categories = [code for code in GUARD_CATEGORIES if code in found]
        flag.blocked = flag.blocked or finding.blocked
        flag.save(update_fields=["categories", "blocked"])
    return flag


def review_flag(actor, flag: SafetyFlag, decision: str) -> SafetyFlag:
    """Record a reviewer's decision (reviewed, false positive) on the flag and in the audit."""
    if decision not in (SafetyDecision.REVIEWED, SafetyDecision.FALSE_POSITIVE):
        raise ActionError("Choose reviewed or false positive.")
    with transaction.atomic():
        flag.decision, flag.decided_by, flag.decided_at = decision, actor, timezone.now()
        flag.save(update_fields=["decision", "decided_by", "decided_at"])
        label = SafetyDecision(decision).label.lower()
        audit(
            flag.team,
            actor,
            AuditAction.SAFETY_REVIEW,
            f"{_name(actor)} marked a flagged {flag.get_stage_display().lower()} {label}",
            flag=flag.pk,
            message=flag.message_id,
            decision=decision,
        )
    SAFETY_REVIEWS.labels(decision).inc()
    return flag


# Personal API keys (chatapp.teams.api_keys).

# A new key's random prefix may already be another key's (32 bits: rare, not impossible).
PREFIX_TRIES = 5


def create_api_key(user, team: Team | None, name: str, expires_at=None) -> tuple[ApiKey, str]:
    """A new key for `user`; returns it with the whole key, which is never stored or shown again."""
    with transaction.atomic():
        for attempt in range(1, PREFIX_TRIES + 1):
            secret, prefix = api_keys.new_secret()
            try:
                with transaction.atomic():  # a savepoint: a taken prefix undoes only this
                    key = ApiKey.objects.create(
                        user=user,
                        team=team,
                        name=name,
                        prefix=prefix,
                        secret_hash=api_keys.hash_key(secret),
                        expires_at=expires_at,
                    )
                break
            except IntegrityError:
                if attempt == PREFIX_TRIES or not ApiKey.objects.filter(prefix=prefix).exists():
                    raise
        summary = f"{_name(user)} created the API key {name!r} ({prefix})"
        if team is not None:
            audit(team, user, AuditAction.API_KEY_CREATE, summary, key=key.pk, prefix=prefix)
    return key, secret


def revoke_api_key(actor, key: ApiKey, team: Team | None = None) -> None:
    """Revoke a key (its owner's choice, or an admin's of `team`); it stops working at once."""
    with transaction.atomic():
        updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=actor
        )
        audit_team = team or key.team
        if updated and audit_team is not None:
            summary = (
                f"{_name(actor)} revoked {_name(key.user)}'s API key {key.name!r} ({key.prefix})"
            )
            audit(
                audit_team,
                actor,
                AuditAction.API_KEY_REVOKE,
                summary,
                key=key.pk,
                prefix=key.prefix,
                owner=key.user_id,
            )


def touch_api_key(key: ApiKey) -> None:
    """The key was just used: one UPDATE of its last-used time."""
    key.last_used_at = timezone.now()
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=key.last_used_at)


# Memberships from the identity provider's groups (chatapp.identity), at every sign-in.


def apply_group_roles(user, roles: dict[str, str], managed: set[str]) -> None:
    """Make the user's memberships of the managed teams match `roles` ({team name: role}).

    A team named in the map but missing is created when someone must join it. The last-owner
    rule holds: a last owner is kept (and the refusal audited) rather than removed or demoted."""
    who = _name(user)
    for name in sorted(managed):
        role = roles.get(name)
        with transaction.atomic():
            team = _team_named(name, create=role is not None, user=user)
            if team is None:
                continue
            _lock_members(team)
            membership = Membership.objects.select_for_update().filter(team=team, user=user).first()
            if membership is None and role is not None:
                Membership.objects.create(team=team, user=user, role=role)
                audit(
                    team,
                    user,
                    AuditAction.MEMBER_ADD,
                    f"Sign-in added {who} as {role}",
                    user=who,
                    role=role,
                    source="oidc",
                )
            elif membership is not None and membership.role != role:
                _sync_change(team, user, membership, role)


def _team_named(name: str, *, create: bool, user) -> Team | None:
    """The team the map names, in any letter case (the name as written first), as the team
    form takes the two for one; made when `create` and there is none."""
    teams = Team.objects.filter(personal_owner=None).order_by("pk")

    def named() -> Team | None:
        return teams.filter(name=name).first() or teams.filter(name__iexact=name).first()

    team = named()
    if team is None and create:
        # Another sign-in may be making it right now: theirs holds the audit trail's lock, which
        # its team.create takes, until it commits; after it, look again rather than make a second.
        lock_audit_chain()
        team = named()
    if team is None and create:
        team = Team.objects.create(name=name)
        audit(
            team,
            user,
            AuditAction.TEAM_CREATE,
            f"Sign-in created the team {name} for {_name(user)}",
            source="oidc",
        )
    return team


def _sync_change(team: Team, user, membership: Membership, role: str | None) -> None:
    who, old = _name(user), membership.role
    if old == Role.OWNER and _owner_count(team) <= 1:
        audit(
            team,
            user,
            AuditAction.ROLE_CHANGE,
            f"Sign-in kept {who} as owner: a team needs an owner (groups asked for"
            f" {role or 'no membership'})",
            user=who,
            old=old,
            new=old,
            refused=role or "remove",
            source="oidc",
        )
        return
    if role is None:
        membership.delete()
        audit(
            team,
            user,
            AuditAction.MEMBER_REMOVE,
            f"Sign-in removed {who} ({old})",
            user=who,
            role=old,
            source="oidc",
        )
        return
    membership.role = role
    membership.save(update_fields=["role"])
    audit(
        team,
        user,
        AuditAction.ROLE_CHANGE,
        f"Sign-in changed {who} from {old} to {role}",
        user=who,
        old=old,
        new=role,
        source="oidc",
    )


# Saved JSON schemas (response_format).


def save_json_schema(
    actor, team: Team, saved: JsonSchema | None = None, *, name: str, schema: dict, seen: str = ""
) -> JsonSchema:
    """Create or change a team's JSON schema; ActionError for a bad name, schema or a clash.
    `seen`: the schema's state() as it was read; changed since, nothing is saved (Changed)."""
    problem = json_schemas.name_problem(name) or json_schemas.schema_problem(schema)
    if problem:
        raise ActionError(problem)
    try:
        with transaction.atomic():
            created = saved is None
            if created:
                limit = settings.TEAM_MAX_JSON_SCHEMAS
                check_room(team, team.json_schemas.all(), limit, "too_many_schemas", "JSON schemas")
            stored = None if saved is None else _hold_schema(saved)
            if saved is not None and stored is None:
                raise Gone(
                    f"The schema {saved.name} was deleted meanwhile, by someone else:"
                    " your changes were not saved."
                )
            if seen and stored is not None and stored.state() != seen:
                raise Changed(
                    f"The schema {stored.name} was changed meanwhile, by someone else: your"
                    " changes were not saved."
                )
            target = saved or JsonSchema(team=team)
            target.name, target.schema = name, schema
            target.save()
            action = AuditAction.SCHEMA_CREATE if created else AuditAction.SCHEMA_UPDATE
            verb = "created" if created else "edited"
            audit(
                team,
                actor,
                action,
                f"{_name(actor)} {verb} the JSON schema {name}",
                schema_id=target.pk,
                name=name,
            )
    except IntegrityError:
        raise ActionError(f"A schema named {name!r} already exists in this team.") from None
    return target


def _hold_schema(saved: JsonSchema) -> JsonSchema | None:
    """Lock the stored schema and return it as stored; None when it was deleted meanwhile
    (its save() would insert it again, under its old id, as if never deleted)."""
    return JsonSchema.objects.select_for_update().filter(pk=saved.pk).first()


def delete_json_schema(actor, saved: JsonSchema) -> None:
    """Delete a schema; conversations and prompts that asked for it fall back to json_object."""
    with transaction.atomic():
        # Its row first, as a send asking for it holds it (start_reply): the conversations
        # naming it, then read, include that send's.
        lock_rows(JsonSchema.objects.filter(pk=saved.pk))
        if not JsonSchema.objects.filter(pk=saved.pk).delete()[0]:
            return  # deleted meanwhile: the trail records that deletion, by whoever made it
        audit(
            saved.team,
            actor,
            AuditAction.SCHEMA_DELETE,
            f"{_name(actor)} deleted the JSON schema {saved.name}",
            schema_id=saved.pk,
            name=saved.name,
        )
