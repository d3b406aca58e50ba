"""Personal API keys: how a key looks, how a presented key is found, and who sees which keys.

Reads only; creating, using and revoking keys are writes, in `chatapp.teams.actions`.
A key reads `ltc_<prefix>_<secret>`: the prefix is stored plainly (pages show it to tell keys
apart), the whole key only as a SHA-256 hash. The secret carries 256 random bits, so a fast
hash is the right one: nobody can guess through it, and a lookup costs one indexed query.
"""

import hashlib
import secrets

from chatapp.teams.models import ApiKey, ApiKeyQuerySet, Membership, Role, Team

KEY_START = "ltc_"
MAX_KEY_LENGTH = 200  # anything longer is not one of ours: refused before hashing


def new_secret() -> tuple[str, str]:
    """(the whole key, its visible prefix)."""
    prefix = KEY_START + secrets.token_hex(4)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_for(presented: str) -> ApiKey | None:
    """The active key a request presents (with its user), or None for anything else."""
    if not presented.startswith(KEY_START) or len(presented) > MAX_KEY_LENGTH:
        return None
    key = (
        ApiKey.objects.active()
        .select_related("user", "team")
        .filter(secret_hash=hash_key(presented))
        .first()
    )
    if key is None or not key.user.is_active:
        return None
    return key


def keys_of(user) -> ApiKeyQuerySet:
    """The user's keys that are not revoked (expired ones stay listed, marked so)."""
    return ApiKey.objects.filter(user=user, revoked_at__isnull=True).select_related("team")


def member_keys(team: Team, role: str) -> ApiKeyQuerySet:
    """The unrevoked keys of the team's members that someone of `role` there may revoke, for
    the team's owners and admins (never the secrets): admins act on members and admins only,
    as they do on the members themselves."""
    members = Membership.objects.filter(team=team)
    if role != Role.OWNER:
        members = members.exclude(role=Role.OWNER)
    return (
        ApiKey.objects.filter(user__in=members.values("user_id"), revoked_at__isnull=True)
        .select_related("user", "team")
        .order_by("user__username", "-created_at", "-id")
    )


def member_key(team: Team, role: str, key_id: int) -> ApiKey | None:
    """One unrevoked key of one of the team's members that `role` may revoke, or None."""
    return member_keys(team, role).filter(pk=key_id).first()
