"""A person's own API keys: what the settings page and `/api/keys/` show of them, and the
expiry a new key may have. The keys and their writes are `chatapp.teams` (team admins see
and revoke their members' keys there)."""

from datetime import datetime, time

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from chatapp.teams.models import ApiKey

MAX_KEYS = 50  # unrevoked keys a person may hold at once
MAX_EXPIRY_DAYS = 3650


class KeyProblem(ValueError):
    """A key that cannot be made as asked; the message says what to change."""


def parse_expiry(value: str | None) -> datetime | None:
    """An ISO date (the end of that day, server time) or date-time in the future, or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    moment = _parse_datetime(text)
    if moment is None:
        day = _parse_date(text)
        if day is None:
            raise KeyProblem("The expiry must be a date (2027-01-31) or an ISO date-time.")
        moment = timezone.make_aware(datetime.combine(day, time.max))
    elif timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    now = timezone.now()
    if moment <= now:
        raise KeyProblem("The expiry must be in the future.")
    if (moment - now).days > MAX_EXPIRY_DAYS:
        raise KeyProblem(f"The expiry must be within {MAX_EXPIRY_DAYS // 365} years.")
    return moment


def _parse_datetime(text: str) -> datetime | None:
    try:
        return parse_datetime(text)
    except ValueError:  # well-formed but impossible, such as month 13
        return None


def _parse_date(text: str):
    try:
        return parse_date(text)
    except ValueError:
        return None


def check_room(user) -> None:
    if ApiKey.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_KEYS:
        raise KeyProblem(f"You already hold {MAX_KEYS} keys: revoke one you no longer use first.")


def key_json(key: ApiKey) -> dict:
    """What a key's owner (or a team admin) sees: never the secret."""
    return {
        "id": key.pk,
        "name": key.name,
        "prefix": key.prefix,
        "team_id": key.team_id,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
        "expired": key.is_expired,
    }
