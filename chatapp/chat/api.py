"""The chat's JSON API: conversations (list, search, read, rename, delete, export) and models.

The conventions (errors, auth, CSRF, 404s) are chatapp.core.api's.
"""

import json
import logging
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.http import content_disposition_header
from ninja import Field, Path, Query, Router, Schema

from chatapp.accounts import preferences
from chatapp.chat import json_output, planning, search, tree
from chatapp.chat.actions import conversations, replies
from chatapp.chat.errors import ChatError
from chatapp.chat.lookups import ENDING_FIELDS, ended_calls, key_help, stored_error, withheld
from chatapp.chat.models import (
    Conversation,
    Message,
    MessageRole,
    MessageStatus,
    get_conversation_for_user,
    usage_dict,
)
from chatapp.core.api import (
    MAX_ID,
    MAX_PAGE,
    ApiError,
    RequestBody,
    Text,
    blank_is,
    documented_body,
    one_page,
    read_body,
    responses,
)
from chatapp.core.text import file_slug, one_line, visible
from chatapp.teams import policy
from chatapp.teams.models import Membership
from chatapp.teams.services import current_team
from chatapp.uploads.api import UploadOut
from chatapp.uploads.context import sees_images
from chatapp.uploads.models import Upload

log = logging.getLogger(__name__)
router = Router(tags=["conversations"])

PAGE_SIZE = 20
MAX_QUERY_LENGTH = 1000
TITLE_MAX_LENGTH = Conversation._meta.get_field("title").max_length or 200

SEARCH = Query(
    "",
    max_length=MAX_QUERY_LENGTH,
    description='Words in titles or messages, best matches first: "a phrase", -excluded, OR',
)
PAGE = Query(1, ge=1, le=MAX_PAGE)
TEAM = Query(None, ge=1, le=MAX_ID, description="Only the conversations started in this team")
EXPORT_FORMAT = Query("md")
ConversationId = Annotated[int, Path(ge=1, le=MAX_ID)]


class ConversationSummary(Schema):
    id: int
    title: str
    pinned: bool = Field(description="Shown on top of the list (the list gives these first).")
    created_at: datetime
    updated_at: datetime


class SearchResult(ConversationSummary):
    message_id: int | None = Field(
        None, description="With `q`: the message that matches best (null: only the title matches)."
    )
    snippet: str | None = Field(None, description="With `q`: that message's text around them.")


class ConversationPage(Schema):
    results: list[SearchResult]
    next: str | None = Field(description="The address of the next page, or null.")


class ChatSettings(Schema):
    model: str
    temperature: float | None
    max_tokens: int | None
    top_p: float | None
    tools: bool = Field(
        True, description="Whether the team's tools are offered here (chat.send settings.tools)."
    )


class ToolCallOut(Schema):
    id: str
    name: str
    arguments: str = Field(description="The JSON object text the model wrote.")
    status: str
    content: str | None = Field(description="The result: untrusted text, never HTML.")
    is_error: bool
    elapsed: float | None = Field(description="Seconds the call took.")
    round: int
    offset: int = Field(description="Characters of the answer's text before the call's turn.")


class SystemPromptUsed(Schema):
    id: int | None
    content: str
    locked: bool


class Usage(Schema):
    prompt_tokens: int
    completion_tokens: int


class MessageError(Schema):
    code: str
    message: str
    retryable: bool = Field(description="Whether regenerating the answer may help.")
    help_url: str | None = Field(
        None, description="A refused key: where the team's owners change it, shown to them."
    )


class SafetyOut(Schema):
    flagged: bool
    categories: list[str]
    stages: list[str]
    unscreened: list[str]


class FormatOut(Schema):
    type: str = Field(description="json_object or json_schema")
    valid: bool | None = Field(
        None, description="Whether the answer kept to it (absent while streaming)."
    )
    error: str | None = Field(None, description="Why not: not JSON, or where it breaks the schema.")
    name: str | None = None
    schema_id: int | None = None


class ResponseFormatOut(Schema):
    type: str = Field(description="text, json_object or json_schema")
    schema_id: int | None
    name: str | None


class RedactionOut(Schema):
    placeholder: str
    label: str


class MessageOut(Schema):
    id: int
    parent_id: int | None = Field(description="The message this one follows (null: a first one).")
    sibling_ids: list[int] = Field(
        description="The versions beside it (edited questions, regenerated answers), itself"
        " included, oldest first."
    )
    role: str
    content: str
    status: str
    model: str
    usage: Usage | None
    finish_reason: str | None
    error: MessageError | None
    created_at: datetime
    safety: SafetyOut | None = Field(
        None, description="Llama Guard's findings on an answer the team screened (else null)."
    )
    redactions: list[RedactionOut] | None = Field(
        None, description="What the team's data filter replaced upstream in a question."
    )
    format: FormatOut | None = Field(
        None, description="JSON output: the format an answer was asked for and the check's outcome."
    )
    attachments: list[UploadOut] | None = Field(
        None, description="The files sent with a user message (absent on answers)."
    )
    tool_calls: list[ToolCallOut] | None = Field(
        None, description="An answer's tool calls and their results, in order (else absent)."
    )


class ConversationOut(ConversationSummary):
    team_id: int = Field(description="The team it was started in (its prompts, models, files)")
    temporary: bool = Field(
        description="Not saved in history: absent from lists, search and exports, deleted"
        " when it ends or after 24 hours."
    )
    settings: ChatSettings
    system_prompt: SystemPromptUsed
    response_format: ResponseFormatOut
    messages: list[MessageOut]


class ConversationExport(ConversationOut):
    tree: list[MessageOut] = Field(
        description="Every message of every branch, oldest first (`messages` is the one shown)."
    )


class ConversationEdit(RequestBody):
    title: Text | None = None
    pinned: bool | None = None


class ModelChoice(Schema):
    id: str
    images: bool = Field(description="Whether the model understands images (LLAMA_IMAGE_MODELS).")


class ModelList(Schema):
    models: list[ModelChoice]
    default: str


# --- conversations -------------------------------------------------------------------------


@router.get("/conversations/", response=responses({200: ConversationPage}))
def conversation_list(
    request: HttpRequest,
    q: Text = SEARCH,
    page: Annotated[int, blank_is(1)] = PAGE,
    team: Annotated[int | None, blank_is(None)] = TEAM,
):
    query = q.strip()
    start = (page - 1) * PAGE_SIZE
    # One row more than shown tells whether a next page exists.
    if query:
        rows = search.search_conversations(request.user, query, start, PAGE_SIZE + 1, team=team)
    else:
        conversations = Conversation.objects.for_user(request.user).saved().pinned_first()
        if team is not None:
            conversations = conversations.filter(team_id=team)
        fields = ["id", "title", "pinned", "created_at", "updated_at"]
        rows = list(conversations.values(*fields)[start : start + PAGE_SIZE + 1])
    following: dict = {"q": query, "page": page + 1}
    if team is not None:
        following["team"] = team
    rows, next_url = one_page(request, rows, PAGE_SIZE, following)
    return {"results": rows, "next": next_url}


@router.get("/conversations/{int:conversation_id}/", response=responses({200: ConversationOut}))
def conversation_detail(request: HttpRequest, conversation_id: ConversationId):
    conversation = get_conversation_for_user(request.user, conversation_id)
    data = conversation_data(conversation, viewer=request.user)
    # What the next message will use: the team's policy may have changed since it was set. A
    # conversation of a team the user left has no next message: it shows what it used.
    member = Membership.objects.filter(team_id=conversation.team_id, user_id=conversation.owner_id)
    if member.exists():
        data["settings"].update(planning.next_settings(request.user, conversation))
    return data


@router.patch(
    "/conversations/{int:conversation_id}/",
    response=responses({200: ConversationSummary}),
    openapi_extra=documented_body(ConversationEdit),
)
def conversation_edit(request: HttpRequest, conversation_id: ConversationId):
    """Rename (`title`) and/or pin or unpin (`pinned`) the conversation."""
    conversation = get_conversation_for_user(request.user, conversation_id)
    edit = read_body(request, ConversationEdit)
    if edit.title is None and edit.pinned is None:
        raise ApiError(400, "invalid", "Give the conversation a title, or pinned.", "title")
    title = None if edit.title is None else _clean_title(edit.title)
    try:
        if title is not None:
            conversations.rename_conversation(conversation, title)
        if edit.pinned is not None:
            conversations.pin_conversation(conversation, edit.pinned)
    except ChatError as error:  # deleted meanwhile, in another tab
        raise ApiError(404, error.code, error.message) from None
    return conversation_summary(conversation)


@router.delete("/conversations/{int:conversation_id}/", response=responses({204: None}))
def conversation_delete(request: HttpRequest, conversation_id: ConversationId):
    conversation = get_conversation_for_user(request.user, conversation_id)
    try:
        streaming = conversations.delete_conversation(conversation)
    except ChatError as error:  # a legal hold keeps it
        raise ApiError(409, error.code, error.message) from None
    replies.stop_deleted_answers(streaming)  # upstream too, wherever they run
    return HttpResponse(status=204)


def _clean_title(title: str) -> str:
    title = one_line(title)  # no control characters or marks that reorder it
    if not visible(title):
        raise ApiError(400, "invalid", "Give the conversation a title.", "title")
    if len(title) > TITLE_MAX_LENGTH:
        raise ApiError(
            400, "invalid", f"A title has at most {TITLE_MAX_LENGTH} characters.", "title"
        )
    return title


def conversation_summary(conversation: Conversation) -> dict:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "pinned": conversation.pinned,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
    }


MESSAGE_FIELDS = (
    "id",
    "parent_id",
    "role",
    "content",
    "status",
    *ENDING_FIELDS,
    "created_at",
    "safety",
    "redactions",
    "tool_calls",
    "format",
)


def conversation_data(
    conversation: Conversation, *, whole_tree: bool = False, viewer: Any = None
) -> dict:
    """The conversation with its shown branch, root to leaf (and every message: whole_tree).
    A `viewer` who may change the team's key is told where, under an answer that failed on a
    refused key; an export names no viewer."""
    branch = tree.conversation_branch(conversation.pk, conversation.active_leaf_id)
    # Plain rows, not model instances: a long conversation is thousands of messages.
    messages = Message.objects.filter(conversation=conversation)
    if not whole_tree:
        messages = messages.filter(pk__in=branch.path)
    rows = list(messages.values(*MESSAGE_FIELDS))
    files = Upload.objects.filter(message__in=[row["id"] for row in rows]).by_message()
    return _conversation_json(conversation, rows, files, branch, whole_tree, viewer)


def whole_trees(conversations: list[Conversation]) -> list[dict]:
    """conversation_data(whole_tree=True) of each of these conversations, their messages and
    files read together: the same few queries for any number of conversations."""
    rows_of: dict[int, list[dict]] = {conversation.pk: [] for conversation in conversations}
    messages = Message.objects.filter(conversation__in=conversations)
    for row in messages.values("conversation_id", *MESSAGE_FIELDS):
        rows_of[row.pop("conversation_id")].append(row)
    files = Upload.objects.filter(message__conversation__in=conversations).by_message()
    trees = []
    for conversation in conversations:
        rows = rows_of[conversation.pk]
        pairs = [(row["id"], row["parent_id"]) for row in rows]
        branch = tree.shown_branch(pairs, conversation.active_leaf_id)
        trees.append(_conversation_json(conversation, rows, files, branch, True, None))
    return trees


def _conversation_json(
    conversation: Conversation,
    rows: list[dict],
    files: dict[int, list[Upload]],
    branch: tree.Branch,
    whole_tree: bool,
    viewer: Any,
) -> dict:
    help_url = key_help(viewer, conversation.team_id, rows) if viewer else None
    listed = [
        message_data(row, files.get(row["id"], []), branch.siblings(row["id"]), help_url)
        for row in rows
    ]
    shown = set(branch.path)
    data = {
        **conversation_summary(conversation),
        "temporary": conversation.temporary,
        "team_id": conversation.team_id,
        "settings": {**conversation.settings, "tools": conversation.tools_enabled},
        "system_prompt": {
            "id": conversation.system_prompt_id,
            "content": conversation.system_prompt_text,
            "locked": planning.prompt_locked(conversation),
        },
        "response_format": json_output.format_summary(conversation),
        "messages": [message for message in listed if message["id"] in shown],
    }
    if whole_tree:
        data["tree"] = listed
    return data


def message_data(
    row: dict, uploads: list[Upload], sibling_ids: list[int], help_url: str | None = None
) -> dict:
    data = {
        "id": row["id"],
        "parent_id": row["parent_id"],
        "sibling_ids": sibling_ids,
        "role": row["role"],
        "content": withheld(row),
        "status": row["status"],
        "model": row["model"],
        "usage": usage_dict(row["prompt_tokens"], row["completion_tokens"]),
        "finish_reason": row["finish_reason"] or None,
        "error": stored_error(row, help_url),
        "created_at": row["created_at"],
        "safety": row["safety"],
        "format": json_output.shown_format(row["format"]),
    }
    if row["role"] == MessageRole.USER:
        data["attachments"] = [upload.summary() for upload in uploads]
        data["redactions"] = row["redactions"]
    if row["tool_calls"]:
        data["tool_calls"] = ended_calls(row)
    return data


EXPORTED = {
    200: {
        "description": "The conversation as a file to download",
        "content": {
            "text/markdown": {"schema": {"type": "string"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/ConversationExport"}},
        },
    }
}


@router.get(
    "/conversations/{int:conversation_id}/export",
    response=responses({200: ConversationExport}),
    openapi_extra={"responses": EXPORTED},
)
def conversation_export(
    request: HttpRequest,
    conversation_id: ConversationId,
    format: Literal["md", "json"] = EXPORT_FORMAT,
):
    conversation = get_conversation_for_user(request.user, conversation_id)
    if conversation.temporary:
        raise Http404("A temporary chat is not exported")
    filename = f"{file_slug(conversation.title) or 'conversation'}-{conversation.pk}.{format}"
    data = conversation_data(conversation, whole_tree=format == "json")
    response: HttpResponse
    if format == "json":
        response = JsonResponse(data, json_dumps_params={"indent": 2, "ensure_ascii": False})
    else:
        response = HttpResponse(markdown_export(data), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


def markdown_export(data: dict) -> str:
    lines = [f"# {data['title'] or 'Conversation'}", ""]
    settings = data["settings"]
    lines += [f"Model: {settings['model']}", ""]
    if data["system_prompt"]["content"]:
        lines += ["## System prompt", "", _closed_code(data["system_prompt"]["content"]), ""]
    for message in data["messages"]:
        heading = {"user": "You", "assistant": "Assistant"}.get(message["role"], "System")
        if message["status"] not in (MessageStatus.COMPLETE, MessageStatus.STREAMING):
            heading += f" ({message['status']})"
        lines += [f"## {heading}", ""]
        if message.get("error") and message["error"]["message"]:  # why it failed or was cut off
            lines += [f"_{message['error']['message']}_", ""]
        if files := message.get("attachments"):  # named, as a share names them
            lines += ["Files: " + ", ".join(file["name"] for file in files), ""]
        for call in message.get("tool_calls") or []:
            lines += _markdown_call(call)
        lines += [_closed_code(message["content"]), ""]
    return "\n".join(lines)


# A fence line as CommonMark reads it: up to 3 spaces, then 3 or more backticks or tildes.
FENCE_LINE = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")


def _closed_code(text: str) -> str:
    """The text with a code block it leaves open (an answer cut off in its code) closed at its
    end, as wide and as indented as it opened: else every later turn of the export is code."""
    opened: re.Match[str] | None = None
    for line in re.split(r"\r\n|\r|\n", text):
        fence = FENCE_LINE.fullmatch(line)
        if opened is None:
            # A backtick fence's info string holds no backtick (else it is inline code).
            if fence and not (fence[2][0] == "`" and "`" in fence[3]):
                opened = fence
        elif fence and fence[2][0] == opened[2][0] and len(fence[2]) >= len(opened[2]):
            opened = None if not fence[3].strip(" \t") else opened
    if opened is None:
        return text
    end = "" if text.endswith(("\n", "\r")) else "\n"
    return f"{text}{end}{opened[1]}{opened[2]}"


def _markdown_call(call: dict) -> list[str]:
    """A tool call and its result as fenced blocks (the result is text, never markup)."""
    outcome = "error" if call.get("is_error") else "result"
    content = call.get("content") or ""
    longest = max((len(run) for run in re.findall(r"~+", content + call["arguments"])), default=0)
    fence = "~" * max(4, longest + 1)  # longer than any in the text, so it cannot close early
    return [
        f"**Tool call** `{call['name']}`",
        "",
        f"{fence}json",
        _pretty(call["arguments"]),
        fence,
        "",
        f"**Tool {outcome}**",
        "",
        fence,
        content,
        fence,
        "",
    ]


def _pretty(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return arguments


# --- models --------------------------------------------------------------------------------


@router.get("/models/", response=responses({200: ModelList}), tags=["settings"])
def model_list(request: HttpRequest):
    team = current_team(request)
    models = policy.allowed_models(team)
    try:
        default = preferences.effective_settings(request.user, team)["model"]
    except policy.PolicyError:
        default = models[0]
    listed = [{"id": model, "images": sees_images(model)} for model in models]
    return {"models": listed, "default": default}
