"""Team membership lookups and the personal team every user gets when first needed."""

from django.db import IntegrityError, transaction
from django.http import Http404

from chatapp.teams.models import Membership, Role, Team

SESSION_TEAM_KEY = "current_team_id"


def ensure_personal_team(user) -> Team:
    """The user's personal team, created (with the user as owner) the first time it is needed."""
    team = Team.objects.filter(personal_owner=user).first()
    if team:
        return team
    try:
        with transaction.atomic():
            team = Team.objects.create(name=f"{user.get_username()}'s team", personal_owner=user)
            Membership.objects.create(team=team, user=user, role=Role.OWNER)
    except IntegrityError:  # created concurrently by another request
        team = Team.objects.get(personal_owner=user)
    return team


def current_team(request) -> Team:
    """The team chosen in this session, else the user's first team, else a new personal team."""
    user = request.user
    team_id = request.session.get(SESSION_TEAM_KEY)
    team = None
    if team_id:
        team = Team.objects.for_user(user).filter(pk=team_id).first()
    if team is None:
        team = Team.objects.for_user(user).order_by("created_at", "id").first()
    if team is None:
        team = ensure_personal_team(user)
    if request.session.get(SESSION_TEAM_KEY) != team.pk:
        request.session[SESSION_TEAM_KEY] = team.pk
    return team


def get_membership(user, team_id) -> Membership:
    """The user's membership of a team, or 404 when the user is not in it."""
    membership = (
        Membership.objects.select_related("team").filter(user=user, team_id=team_id).first()
    )
    if membership is None:
        raise Http404("No such team")
    return membership
