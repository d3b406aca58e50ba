"""The chat's JSON API: conversations (list, search, read, rename, delete, export) and models.

Session auth; Django's CSRF middleware guards the writes (JSON clients send X-CSRFToken).
Errors are `{"error": {"code", "message", "field"?}}` with a 4xx status.
"""

import json
import logging
import re
from functools import wraps
from urllib.parse import urlencode

from asgiref.sync import async_to_sync
from django.db.models import Exists, OuterRef, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache

from chatapp.chat import actions
from chatapp.chat.models import (
    Conversation,
    Message,
    MessageStatus,
    get_conversation_for_user,
    usage_dict,
)
from chatapp.teams import policy
from chatapp.teams.services import current_team

log = logging.getLogger(__name__)

PAGE_SIZE = 20
MAX_QUERY_LENGTH = 200
TITLE_MAX_LENGTH = Conversation._meta.get_field("title").max_length
EXPORT_FORMATS = ("md", "json")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def error_response(status: int, code: str, message: str, field: str | None = None):
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    return JsonResponse({"error": error}, status=status)


def api_view(*methods: str):
    """JSON endpoint: 401 when logged out, 405 (with Allow) for other methods, ApiError -> 4xx."""

    def decorate(view):
        @never_cache
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if not request.user.is_authenticated:
                return error_response(401, "not_authenticated", "Log in to use the API.")
            if request.method not in methods:
                allowed = ", ".join(methods)
                response = error_response(
                    405, "method_not_allowed", f"Use {allowed} on this address."
                )
                response["Allow"] = allowed
                return response
            try:
                return view(request, *args, **kwargs)
            except ApiError as error:
                return error_response(error.status, error.code, error.message, error.field)

        return wrapper

    return decorate


def json_body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "Send a JSON object.")
    return body


def only_fields(body: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        names = ", ".join(unknown)
        raise ApiError(
            400, "invalid_body", f"Unknown fields: {names}. Send {', '.join(allowed)}.", unknown[0]
        )


# --- conversations -----------------------------------------------------------------------


@api_view("GET")
def conversation_list(request: HttpRequest) -> JsonResponse:
    query = request.GET.get("q", "").strip()
    page = _page_number(request.GET.get("page"))
    if len(query) > MAX_QUERY_LENGTH:
        raise ApiError(400, "invalid_query", f"Search at most {MAX_QUERY_LENGTH} characters.", "q")
    conversations = Conversation.objects.for_user(request.user)
    if query:
        in_messages = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query)
        conversations = conversations.filter(Q(title__icontains=query) | Exists(in_messages))
    start = (page - 1) * PAGE_SIZE
    # One query per page: fetch one row more than shown to know whether a next page exists.
    rows = list(
        conversations.values("id", "title", "created_at", "updated_at")[
            start : start + PAGE_SIZE + 1
        ]
    )
    next_url = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        next_url = request.path + "?" + urlencode({"q": query, "page": page + 1})
    return JsonResponse({"results": rows, "next": next_url})


def _page_number(raw: str | None) -> int:
    if raw in (None, ""):
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, "invalid_page", "page must be a whole number from 1.", "page")
    return int(raw)


@api_view("GET", "PATCH", "DELETE")
def conversation_detail(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_conversation_for_user(request.user, conversation_id)
    if request.method == "PATCH":
        title = _title_from_body(json_body(request))
        actions.rename_conversation(conversation, title)
        return JsonResponse(conversation_summary(conversation))
    if request.method == "DELETE":
        streaming = actions.delete_conversation(conversation)
        for message_id in streaming:  # the answers stop upstream too, wherever they run
            try:
                async_to_sync(actions.request_stop)(message_id)
            except Exception:  # channel layer down: the answer ends on its own, unsaved
                log.warning("Could not stop answer %s of a deleted conversation", message_id)
        return HttpResponse(status=204)
    return JsonResponse(conversation_data(conversation))


def _title_from_body(body: dict) -> str:
    only_fields(body, ("title",))
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ApiError(400, "invalid_title", "Give the conversation a title.", "title")
    title = " ".join(title.split())
    if len(title) > TITLE_MAX_LENGTH:
        raise ApiError(
            400, "invalid_title", f"A title has at most {TITLE_MAX_LENGTH} characters.", "title"
        )
    return title


def conversation_summary(conversation: Conversation) -> dict:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
    }


MESSAGE_FIELDS = (
    "id",
    "role",
    "content",
    "status",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "error_code",
    "error_message",
    "created_at",
)


def conversation_data(conversation: Conversation) -> dict:
    # Plain rows, not model instances: a long conversation is thousands of messages.
    rows = conversation.messages.values(*MESSAGE_FIELDS)
    return {
        **conversation_summary(conversation),
        "settings": conversation.settings,
        "system_prompt": {
            "id": conversation.system_prompt_id,
            "content": conversation.system_prompt_text,
            "locked": conversation.system_prompt_locked,
        },
        "messages": [message_data(row) for row in rows],
    }


def message_data(row: dict) -> dict:
    error = None
    if row["error_code"]:
        error = {"code": row["error_code"], "message": row["error_message"]}
    return {
        "id": row["id"],
        "role": row["role"],
        "content": row["content"],
        "status": row["status"],
        "model": row["model"],
        "usage": usage_dict(row["prompt_tokens"], row["completion_tokens"]),
        "finish_reason": row["finish_reason"] or None,
        "error": error,
        "created_at": row["created_at"],
    }


@api_view("GET")
def conversation_export(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_conversation_for_user(request.user, conversation_id)
    chosen = request.GET.get("format", "md")
    if chosen not in EXPORT_FORMATS:
        raise ApiError(400, "invalid_format", "format must be md or json.", "format")
    filename = f"{_slug(conversation.title) or 'conversation'}-{conversation.pk}.{chosen}"
    data = conversation_data(conversation)
    if chosen == "json":
        response = JsonResponse(data, json_dumps_params={"indent": 2, "ensure_ascii": False})
    else:
        response = HttpResponse(markdown_export(data), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def markdown_export(data: dict) -> str:
    lines = [f"# {data['title'] or 'Conversation'}", ""]
    settings = data["settings"]
    lines += [f"Model: {settings['model']}", ""]
    if data["system_prompt"]["content"]:
        lines += ["## System prompt", "", data["system_prompt"]["content"], ""]
    for message in data["messages"]:
        heading = {"user": "You", "assistant": "Assistant"}.get(message["role"], "System")
        if message["status"] not in (MessageStatus.COMPLETE, MessageStatus.STREAMING):
            heading += f" ({message['status']})"
        lines += [f"## {heading}", "", message["content"], ""]
    return "\n".join(lines)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:50]


# --- models --------------------------------------------------------------------------------


@api_view("GET")
def model_list(request: HttpRequest) -> JsonResponse:
    team = current_team(request)
    models = policy.allowed_models(team)
    try:
        default = policy.effective_settings(request.user, team)["model"]
    except policy.PolicyError:
        default = models[0]
    return JsonResponse({"models": [{"id": model} for model in models], "default": default})
