"""Changes to a user's own account data: the saved defaults for new conversations; and
deleting accounts (the admin site)."""

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from chatapp.accounts.models import UserSettings
from chatapp.teams import actions as team_actions
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


def delete_users(actor: Any, users: Iterable[Any]) -> None:
    """Delete these accounts with what is theirs, all or none. Their personal team goes with
    them only when nobody else is in it; otherwise it is handed over to the others."""
    users = list(users)
    with transaction.atomic():
        team_actions.admin_release_teams(actor, users)
        get_user_model().objects.filter(pk__in=[user.pk for user in users]).delete()
