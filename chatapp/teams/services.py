"""Team membership lookups, and the session's current team."""

from django.core.exceptions import PermissionDenied
from django.http import Http404

from chatapp.core.api import ApiError
from chatapp.teams import reads
from chatapp.teams.actions import ensure_personal_team
from chatapp.teams.models import Membership, Role, Team
from chatapp.teams.policy import RULES_RELATED

SESSION_TEAM_KEY = "current_team_id"

MANAGERS = frozenset({Role.OWNER, Role.ADMIN})
# Who may do what in a team; every team page and API endpoint checks one of these.
PERMISSIONS: dict[str, frozenset[str]] = {
    "view": frozenset(Role.values),
    "manage_members": MANAGERS,
    "manage_prompts": MANAGERS,
    "manage_policy": MANAGERS,
    "manage_tools": MANAGERS,
    "view_usage": MANAGERS,
    "review_safety": MANAGERS,
    "manage_provider": frozenset({Role.OWNER}),
    "view_audit": frozenset({Role.OWNER}),
}


def find_current_team(request, related: tuple[str, ...] = ()) -> Team | None:
    """The team chosen in this session, else the user's first team; None if in no team.

    `related`: relations to read along with it (`select_related`).
    """
    team_id = request.session.get(SESSION_TEAM_KEY)
    if tuple(related) == RULES_RELATED:  # every new conversation's start: plain statements
        chosen = reads.team_with_rules(request.user, team_id) if team_id else None
        return chosen or reads.first_team_with_rules(request.user)
    teams = Team.objects.for_user(request.user).select_related(*related)
    team = None
    if team_id:
        team = teams.filter(pk=team_id).first()
    if team is None:
        team = teams.order_by("created_at", "id").first()
    return team


def current_team(request, related: tuple[str, ...] = ()) -> Team:
    """The session's team (see find_current_team), else a new personal team (a write)."""
    team = find_current_team(request, related) or ensure_personal_team(request.user)
    if request.session.get(SESSION_TEAM_KEY) != team.pk:
        request.session[SESSION_TEAM_KEY] = team.pk
    return team


def user_team(user, team_id: int) -> Team | None:
    """The team, if the user is in it."""
    return Team.objects.for_user(user).filter(pk=team_id).first()


def named_team(user, team_id: int, field: str) -> Team:
    """The team a JSON API request names in `field`: one of the user's, else a 404."""
    team = user_team(user, team_id)
    if team is None:
        raise ApiError(404, "not_found", "You are not in that team.", field)
    return team


def get_membership(user, team_id) -> Membership:
    """The user's membership of a team, or 404 when the user is not in it."""
    membership = (
        Membership.objects.select_related("team").filter(user=user, team_id=team_id).first()
    )
    if membership is None:
        raise Http404("No such team")
    return membership


def can(membership: Membership, permission: str) -> bool:
    return membership.role in PERMISSIONS[permission]


def require(membership: Membership, permission: str) -> Membership:
    """The membership, or 403 naming the roles that have the permission (whom to ask)."""
    if not can(membership, permission):
        who = "owners" if PERMISSIONS[permission] == {Role.OWNER} else "owners and admins"
        message = f"Only the team's {who} can do this: ask one of them if you need it."
        raise PermissionDenied(message)
    return membership


def get_team_access(user, team_id, permission: str = "view") -> Membership:
    """404 for anyone not in the team, 403 for members whose role lacks the permission."""
    return require(get_membership(user, team_id), permission)


def switch_team(request, team: Team) -> None:
    request.session[SESSION_TEAM_KEY] = team.pk


def permissions_of(membership: Membership) -> set[str]:
    return {name for name, roles in PERMISSIONS.items() if membership.role in roles}
