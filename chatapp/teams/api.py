"""JSON API for the current team's system prompts (DESIGN.md: /api/system-prompts/).

Reads for every member; writes for owners and admins (403 for members); a prompt outside the
user's current team is a 404. Session auth, CSRF enforced on writes by Django's middleware.
"""

import json

from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_http_methods

from chatapp.teams import actions, services
from chatapp.teams.models import SystemPrompt

FIELDS = {"name": str, "content": str, "is_default": bool, "locked": bool}
MAX_LENGTH = {"name": 100, "content": 20_000}


class BadInput(Exception):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


def error(status: int, code: str, message: str, field: str | None = None) -> JsonResponse:
    body = {"code": code, "message": message}
    if field:
        body["field"] = field
    return JsonResponse({"error": body}, status=status)


def prompt_json(prompt: SystemPrompt) -> dict:
    return {
        "id": prompt.pk,
        "name": prompt.name,
        "content": prompt.content,
        "is_default": prompt.is_default,
        "locked": prompt.locked,
        "version": prompt.version,
    }


def _parse(request, required: bool) -> dict:
    """The request's JSON object, each field type- and length-checked."""
    try:
        data = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise BadInput("The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise BadInput("The body must be a JSON object.")
    if unknown := sorted(set(data) - set(FIELDS)):
        raise BadInput(f"Unknown field: {unknown[0]}.", unknown[0])
    for name, kind in FIELDS.items():
        if name not in data:
            if required and kind is str:
                raise BadInput(f"{name} is required.", name)
            continue
        value = data[name]
        if not isinstance(value, kind):
            raise BadInput(f"{name} must be a {'string' if kind is str else 'boolean'}.", name)
        if kind is str:
            data[name] = value = value.strip() if name == "name" else value
            if not value.strip():
                raise BadInput(f"{name} cannot be empty.", name)
            if len(value) > MAX_LENGTH[name]:
                raise BadInput(f"{name} must be at most {MAX_LENGTH[name]} characters.", name)
    return data


def _login_required(view):
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return error(401, "not_authenticated", "Log in first.")
        return view(request, *args, **kwargs)

    return wrapped


def _forbidden() -> JsonResponse:
    return error(403, "forbidden", "Only the team's owners and admins can change its prompts.")


def _write(request, membership, prompt: SystemPrompt | None, status: int):
    if not services.can(membership, "manage_prompts"):
        return _forbidden()
    try:
        data = _parse(request, required=prompt is None)
    except BadInput as exc:
        return error(400, "invalid", exc.message, exc.field)
    fields = {
        "name": data.get("name", prompt.name if prompt else ""),
        "content": data.get("content", prompt.content if prompt else ""),
        "is_default": data.get("is_default", prompt.is_default if prompt else False),
        "locked": data.get("locked", prompt.locked if prompt else False),
    }
    try:
        saved = actions.save_prompt(request.user, membership.team, prompt, **fields)
    except actions.ActionError as exc:
        return error(400, "invalid", exc.message, "name")
    return JsonResponse(prompt_json(saved), status=status)


@_login_required
@require_http_methods(["GET", "POST"])
def prompt_list(request):
    team = services.current_team(request)
    membership = services.get_membership(request.user, team.pk)
    if request.method == "POST":
        return _write(request, membership, None, 201)
    results = [prompt_json(p) for p in SystemPrompt.objects.for_team(team)]
    return JsonResponse(
        {"results": results, "can_manage": services.can(membership, "manage_prompts")}
    )


@_login_required
@require_http_methods(["GET", "PATCH", "DELETE"])
def prompt_detail(request, prompt_id: int):
    team = services.current_team(request)
    membership = services.get_membership(request.user, team.pk)
    prompt = SystemPrompt.objects.filter(pk=prompt_id, team=team).first()
    if prompt is None:
        return error(404, "not_found", "No such prompt in your current team.")
    if request.method == "GET":
        return JsonResponse(prompt_json(prompt))
    if request.method == "PATCH":
        return _write(request, membership, prompt, 200)
    if not services.can(membership, "manage_prompts"):
        return _forbidden()
    actions.delete_prompt(request.user, prompt)
    return HttpResponse(status=204)
