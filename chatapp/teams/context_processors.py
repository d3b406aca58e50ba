from django.utils.functional import SimpleLazyObject

from chatapp.teams.services import find_current_team


def current_team(request):
    """The team chip's team: lazy, and never creates one (only pages that show it pay)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"current_team": SimpleLazyObject(lambda: find_current_team(request))}
