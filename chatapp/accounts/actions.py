"""Changes to a user's own account data: the saved defaults for new conversations; and
deleting accounts (the admin site, or the person themselves from their settings)."""

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import F

from chatapp.accounts.models import PendingSignup, UserSettings
from chatapp.teams import actions as team_actions
from chatapp.teams.models import AuditAction
from chatapp.teams.policy import SETTING_NAMES


def save_defaults(user: Any, values: dict[str, Any]) -> UserSettings:
    """Store the user's defaults; a blank model is "", other blank settings None."""
    stored = {name: values.get(name) for name in SETTING_NAMES}
    stored["model"] = stored["model"] or ""
    settings, _ = UserSettings.objects.update_or_create(user=user, defaults=stored)
    return settings


def reset_defaults(user: Any) -> None:
    """Clear the user's defaults, so the team's apply again."""
    blank = {name: None for name in SETTING_NAMES}
    UserSettings.objects.filter(user=user).update(**{**blank, "model": ""})


def admin_save_settings(actor: Any, settings: UserSettings) -> None:
    """A user's defaults saved in the admin site: audited on the site, with what changed."""
    with transaction.atomic():
        stored = UserSettings.objects.filter(pk=settings.pk).first() if settings.pk else None
        settings.save()
        _audit_settings(actor, settings.user, "changed", _values(stored), _values(settings))


def admin_delete_settings(actor: Any, rows: Iterable[UserSettings]) -> None:
    """Each one audited, as one by one; all or none."""
    with transaction.atomic():
        for settings in rows:
            _audit_settings(actor, settings.user, "cleared", _values(settings), _values(None))
            settings.delete()


def _values(settings: UserSettings | None) -> dict[str, Any]:
    """As stored; no row is the same as blank fields (the team's defaults apply)."""
    if settings is None:
        return {name: "" if name == "model" else None for name in SETTING_NAMES}
    return {name: getattr(settings, name) for name in SETTING_NAMES}


def _audit_settings(actor: Any, user: Any, verb: str, old: dict, new: dict) -> None:
    changed = [name for name in SETTING_NAMES if old[name] != new[name]]
    if not changed:
        return
    who = user.get_username()
    team_actions.audit(
        None,
        actor,
        AuditAction.USER_SETTINGS,
        f"{actor.get_username()} {verb} the settings of {who} in the admin site",
        user=who,
        old={name: old[name] for name in changed},
        new={name: new[name] for name in changed},
    )


# What decides whether an account can sign in, and reach the admin site and the site's pages.
ACCESS_FIELDS = ("is_active", "is_staff", "is_superuser")
# What an account is known by: the name one signs in with and the audit trail shows, and the
# address company sign-in matches a verified email against.
IDENTITY_FIELDS = ("username", "email")


def admin_save_user(actor: Any, user: Any) -> None:
    """An account added or changed in the admin site: its creation, and any change to what it
    may reach or what it is known by, are audited on the site."""
    with transaction.atomic():
        model = get_user_model()
        fields = ACCESS_FIELDS + IDENTITY_FIELDS
        stored = model.objects.filter(pk=user.pk).values(*fields).first()
        user.save()
        who, by = user.get_username(), actor.get_username()
        if stored is None:
            access = {name: getattr(user, name) for name in ACCESS_FIELDS}
            summary = f"{by} created the user {who} in the admin site"
            team_actions.audit(None, actor, AuditAction.USER_CREATE, summary, user=who, **access)
            return
        for action, names in (
            (AuditAction.USER_IDENTITY, IDENTITY_FIELDS),
            (AuditAction.USER_ACCESS, ACCESS_FIELDS),
        ):
            changed = [name for name in names if stored[name] != getattr(user, name)]
            if changed:
                team_actions.audit(
                    None,
                    actor,
                    action,
                    f"{by} changed {', '.join(changed)} of {who} in the admin site",
                    user=who,
                    old={name: stored[name] for name in changed},
                    new={name: getattr(user, name) for name in changed},
                )


def permissions_of(subject: Any) -> dict[str, list[str]]:
    """A user's groups and own permissions, or a group's permissions, by name."""
    held = subject.permissions if isinstance(subject, Group) else subject.user_permissions
    names = held.values_list("content_type__app_label", "codename")
    found = {"permissions": sorted(f"{app}.{codename}" for app, codename in names)}
    if not isinstance(subject, Group):
        found["groups"] = sorted(subject.groups.values_list("name", flat=True))
    return found


def audit_permissions(actor: Any, subject: Any, old: dict[str, list[str]]) -> None:
    """What a user or a group may do in the admin site changed there: audited on the site
    with the old and new names of what changed; a save that changes nothing writes nothing."""
    new = permissions_of(subject)
    changed = [name for name in new if old.get(name, []) != new[name]]
    if not changed:
        return
    if isinstance(subject, Group):
        action, whose, named = AuditAction.GROUP_PERMISSIONS, f"group {subject.name}", "group"
        name = subject.name
    else:
        name = subject.get_username()
        action, whose, named = AuditAction.USER_PERMISSIONS, name, "user"
    summary = f"{actor.get_username()} changed the {' and '.join(changed)} of {whose}"
    details = {
        named: name,
        "old": {field: old.get(field, []) for field in changed},
        "new": {field: new[field] for field in changed},
    }
    team_actions.audit(None, actor, action, f"{summary} in the admin site", **details)


def delete_groups(actor: Any, groups: Iterable[Group]) -> None:
    """Each deleted group audited with the permissions its members lose; all or none."""
    with transaction.atomic():
        for group in groups:
            summary = f"{actor.get_username()} deleted group {group.name} in the admin site"
            members = sorted(group.user_set.values_list("username", flat=True))
            permissions = permissions_of(group)["permissions"]
            team_actions.audit(
                None,
                actor,
                AuditAction.GROUP_DELETE,
                summary,
                group=group.name,
                members=members,
                permissions=permissions,
            )
            group.delete()


def audit_password_set(actor: Any, user: Any) -> None:
    """A password set, or password sign-in turned off, for someone in the admin site."""
    done = (
        "set the password of" if user.has_usable_password() else "turned off password sign-in for"
    )
    who = user.get_username()
    summary = f"{actor.get_username()} {done} {who} in the admin site"
    team_actions.audit(
        None, actor, AuditAction.USER_PASSWORD, summary, user=who, usable=user.has_usable_password()
    )


# How a user set their own password: the audit's `how`, and the summary's words for it.
OWN_PASSWORD = {
    "change": "changed their password",
    "reset": "set a new password with a reset link mailed to them",
}


def audit_own_password(user: Any, how: str) -> None:
    """A password the user set themselves: changed while signed in, or reset by email."""
    who = user.get_username()
    summary = f"{who} {OWN_PASSWORD[how]}"
    team_actions.audit(None, user, AuditAction.USER_PASSWORD, summary, user=who, how=how)


def delete_users(actor: Any, users: Iterable[Any]) -> None:
    """Delete these accounts with what is theirs, all or none, each audited on the site. Their
    personal team goes with them only when nobody else is in it; otherwise it is handed over
    to the others."""
    users = list(users)
    with transaction.atomic():
        team_actions.admin_release_teams(actor, users)
        for user in users:
            who = user.get_username()
            summary = f"{actor.get_username()} deleted the user {who} in the admin site"
            team_actions.audit(None, actor, AuditAction.USER_DELETE, summary, user=who)
        get_user_model().objects.filter(pk__in=[user.pk for user in users]).delete()


def delete_own_account(user: Any) -> None:
    """The person deletes their own account, as a site admin would (delete_users), audited as
    theirs. Refused with team_actions.ActionError, nothing changed, while they alone own a team
    others are in, or a team that would go with them is under legal hold."""
    with transaction.atomic():
        team_actions.release_own_teams(user)
        who = user.get_username()
        summary = f"{who} deleted their own account"
        team_actions.audit(None, user, AuditAction.USER_DELETE, summary, user=who)
        get_user_model().objects.filter(pk=user.pk).delete()


def confirm_signup(user: Any) -> None:
    """A signup whose address was proved, by whoever chose its password: the account works."""
    with transaction.atomic():
        PendingSignup.objects.filter(user=user).delete()
        user.is_active = True
        user.save(update_fields=["is_active"])


def count_wrong_signup_password(user: Any, allowed: int) -> bool:
    """One more wrong password on a signup's confirmation page; after `allowed` of them the
    signup (an account never used, holding nothing) is deleted. Whether it was."""
    with transaction.atomic():
        pending = PendingSignup.objects.filter(user=user)
        pending.update(wrong_passwords=F("wrong_passwords") + 1)
        if not pending.filter(wrong_passwords__gte=allowed).exists():
            return False
        user.delete()
    return True
