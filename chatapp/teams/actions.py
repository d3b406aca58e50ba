"""Every change to a team goes through one of these functions, which also writes its audit event.

Callers check that the actor may act in the team at all (chatapp.teams.services); the rules
that depend on the target (owners, the last owner) are checked here and raise ActionError.
"""

from datetime import timedelta

from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from chatapp.teams import crypto
from chatapp.teams.models import (
    AuditAction,
    AuditEvent,
    Invitation,
    Membership,
    Role,
    SystemPrompt,
    SystemPromptVersion,
    Team,
    TeamPolicy,
    TeamProvider,
)

POLICY_FIELDS = (
    "allowed_models",
    "default_model",
    "default_temperature",
    "default_top_p",
    "default_max_tokens",
    "max_tokens_limit",
    "monthly_token_budget",
    "rate_limit_per_minute",
)


class ActionError(Exception):
    """A change the team's rules refuse; the message says why and what to do."""

    def __init__(self, message: str, *, forbidden: bool = False):
        super().__init__(message)
        self.message = message
        self.forbidden = forbidden


def audit(team: Team, actor, action: str, summary: str, **details) -> AuditEvent:
    return AuditEvent.objects.create(
        team=team, actor=actor, action=action, summary=summary[:300], details=details
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


def email_invitation(invitation: Invitation, link: str) -> None:
    """Send the invitation link by email; raises OSError when the mail server fails."""
    send_mail(
        f"You are invited to {invitation.team.name} on Llama team chat",
        f"{_name(invitation.invited_by)} invited you to join {invitation.team.name}"
        f" as {invitation.role}.\n\nAccept the invitation (valid until"
        f" {invitation.expires_at:%Y-%m-%d %H:%M} UTC, once):\n{link}\n",
        None,
        [invitation.email],
    )


def revoke_invitation(actor, invitation: Invitation) -> None:
    with transaction.atomic():
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


def accept_invitation(user, token: str) -> tuple[Membership, bool]:
    """Join the invitation's team; (membership, False) when the user already belongs to it."""
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


def check_usable(invitation: Invitation, user) -> None:
    if invitation.accepted_at is not None:
        raise InvitationError("This invitation has already been used: ask for a new one.", 410)
    if invitation.expires_at <= timezone.now():
        raise InvitationError("This invitation has expired: ask for a new one.", 410)
    if invitation.email and invitation.email.lower() != (user.email or "").strip().lower():
        raise InvitationError(
            "This invitation was sent to a different email address:"
            " log in with the account that uses that address, or ask for a new invitation.",
            403,
        )


def _owner_count(team: Team) -> int:
    # Locks the owners' rows so two concurrent changes cannot both remove "another" owner.
    return len(
        Membership.objects.select_for_update().filter(team=team, role=Role.OWNER).values("pk")
    )


def _check_can_act_on(actor_membership: Membership, target: Membership) -> None:
    if actor_membership.role != Role.OWNER and target.role == Role.OWNER:
        raise ActionError("Only owners can change or remove an owner.", forbidden=True)


def change_role(actor_membership: Membership, target: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise ActionError("Choose a role: owner, admin or member.")
    _check_can_act_on(actor_membership, target)
    if role == Role.OWNER and actor_membership.role != Role.OWNER:
        raise ActionError("Only owners can make someone an owner.", forbidden=True)
    with transaction.atomic():
        target = Membership.objects.select_for_update().select_related("user").get(pk=target.pk)
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
    _check_can_act_on(actor_membership, target)
    with transaction.atomic():
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
        target.delete()


def leave_team(membership: Membership) -> None:
    with transaction.atomic():
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
        membership.delete()


# System prompts.


def save_prompt(
    actor,
    team: Team,
    prompt: SystemPrompt | None = None,
    *,
    name: str,
    content: str,
    is_default: bool = False,
    locked: bool = False,
) -> SystemPrompt:
    """Create a prompt, or edit one keeping its previous text as a SystemPromptVersion."""
    try:
        with transaction.atomic():
            prompt, summary = _apply_prompt(actor, team, prompt, name, content)
            if is_default:  # one default per team: clear the old one first
                team.system_prompts.filter(is_default=True).exclude(pk=prompt.pk).update(
                    is_default=False
                )
            prompt.is_default, prompt.locked = is_default, locked
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
            )
    except IntegrityError:
        raise ActionError(f"A prompt named {name!r} already exists in this team.") from None
    return prompt


def _apply_prompt(actor, team, prompt, name, content) -> tuple[SystemPrompt, str]:
    if prompt is None:
        last = team.system_prompts.aggregate(last=Max("position"))["last"]
        new = SystemPrompt(team=team, position=0 if last is None else last + 1)
        new.name, new.content = name, content
        return new, ""
    prompt = SystemPrompt.objects.select_for_update().get(pk=prompt.pk, team=team)
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
        audit(
            prompt.team,
            actor,
            AuditAction.PROMPT_DELETE,
            f"{_name(actor)} deleted the prompt {prompt.name}",
            prompt_id=prompt.pk,
            name=prompt.name,
            version=prompt.version,
        )
        prompt.delete()


def move_prompt(actor, prompt: SystemPrompt, offset: int) -> None:
    """Move a prompt up (-1) or down (+1) in the team's list."""
    with transaction.atomic():
        prompts = list(SystemPrompt.objects.for_team(prompt.team).select_for_update())
        index = next(i for i, p in enumerate(prompts) if p.pk == prompt.pk)
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


def set_policy(actor, team: Team, values: dict) -> TeamPolicy:
    """Save the team's model policy; the audit event lists what changed."""
    with transaction.atomic():
        policy, _ = TeamPolicy.objects.select_for_update().get_or_create(team=team)
        changes = {}
        for name in POLICY_FIELDS:
            old, new = getattr(policy, name), values.get(name, getattr(policy, name))
            if old != new:
                changes[name] = [old, new]
                setattr(policy, name, new)
        if changes:
            policy.save()
            fields = ", ".join(name.replace("_", " ") for name in changes)
            audit(
                team,
                actor,
                AuditAction.POLICY_UPDATE,
                f"{_name(actor)} changed {fields}",
                changes=changes,
            )
    return policy


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
