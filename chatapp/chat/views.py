"""The chat page: `/` for a new conversation, `/c/<id>/` for one of the user's own."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from chatapp.chat.models import get_conversation_for_user
from chatapp.teams import policy
from chatapp.teams.models import SystemPrompt
from chatapp.teams.services import current_team


def default_model(user, team) -> str:
    """The model a new conversation will use; a stale stored choice falls back to the site's."""
    try:
        return policy.effective_settings(user, team)["model"]
    except policy.PolicyError:
        return policy.site_defaults()["model"]


def system_prompt_choices(team) -> list[dict]:
    prompts = SystemPrompt.objects.for_team(team).only("id", "name", "is_default", "locked")
    return [
        {"id": p.id, "name": p.name, "is_default": p.is_default, "locked": p.locked}
        for p in prompts
    ]


@require_GET
@login_required
def chat(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    conversation = None
    if conversation_id is not None:
        conversation = get_conversation_for_user(request.user, conversation_id)
    team = current_team(request)
    config = {
        "conversationId": conversation.pk if conversation else None,
        "socketPath": "/ws/chat/",
        "defaultModel": default_model(request.user, team),
        "maxContentBytes": settings.CHAT_MAX_CONTENT_BYTES,
        "systemPrompts": system_prompt_choices(team),
    }
    context = {"conversation": conversation, "current_team": team, "chat_config": config}
    return render(request, "chat/index.html", context)
