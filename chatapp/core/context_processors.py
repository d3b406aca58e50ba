from django.conf import settings
from django.utils.functional import SimpleLazyObject


def site(request):
    context = {"offline_demo": settings.LLAMA_OFFLINE_DEMO}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        from chatapp.teams.services import find_current_team

        # Lazy, and never creates a team: only pages that show the team chip pay for it.
        context["current_team"] = SimpleLazyObject(lambda: find_current_team(request))
    return context
