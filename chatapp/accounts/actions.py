"""Changes to a user's own account data: the saved defaults for new conversations."""

from typing import Any

from chatapp.accounts.models import UserSettings
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
