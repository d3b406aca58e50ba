"""A user's own defaults for new conversations, and the settings they resolve to in a team."""

from chatapp.accounts.models import UserSettings
from chatapp.teams.models import Team
from chatapp.teams.policy import SETTING_NAMES, TeamRules, resolve_settings


def user_defaults(user) -> dict:
    """The settings the user saved; blank ones are left out (they mean "the team's")."""
    # `Model.raw`: every answer's plan reads them; the ORM's query cost three times as much.
    table = UserSettings._meta.db_table
    found = UserSettings.objects.raw(f"SELECT * FROM {table} WHERE user_id = %s", [user.pk])
    stored = next(iter(found), None)
    if stored is None:
        return {}
    values = {name: getattr(stored, name) for name in SETTING_NAMES}
    return {k: v for k, v in values.items() if v not in (None, "")}


def effective_settings(
    user,
    team: Team,
    requested: dict | None = None,
    rules: TeamRules | None = None,
    stored: dict | None = None,
) -> dict:
    """Site -> team -> user defaults -> a conversation's `stored` settings -> request, under
    the team's policy (PolicyError if the request breaks it)."""
    return resolve_settings(team, user_defaults(user), requested, rules, stored)
