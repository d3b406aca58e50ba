"""Reads the websocket needs, each checked against the user (not_found for anyone else's)."""

from collections.abc import Iterable
from typing import Any, cast

from django.http import Http404
from django.urls import reverse

from chatapp.chat import json_output, tooling, tree
from chatapp.chat.errors import ChatError
from chatapp.chat.event_schema import Attachment, StateMessage, StoredError, UsageFields
from chatapp.chat.models import (
    Conversation,
    Message,
    MessageRole,
    MessageStatus,
    get_conversation_for_user,
    get_message_for_user,
    usage_dict,
)
from chatapp.teams.models import Membership
from chatapp.teams.services import PERMISSIONS
from chatapp.uploads.models import Upload

# How an answer ended, shown under it: read for the state and for the conversation API.
ENDING_FIELDS = (
    "model",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "error_code",
    "error_message",
)
STATE_FIELDS = (
    "id",
    "parent_id",
    "role",
    "status",
    "content",
    "seq",
    "safety",
    "redactions",
    "tool_calls",
    "format",
    *ENDING_FIELDS,
)


def owned_message(user: Any, message_id: int) -> Message:
    try:
        return get_message_for_user(user, message_id)
    except Http404:
        raise ChatError("not_found", "No such message.", "message_id") from None


def owned_conversation(
    user: Any, conversation_id: int, related: Iterable[str] = ()
) -> Conversation:
    try:
        return get_conversation_for_user(user, conversation_id, related)
    except Http404:
        raise ChatError("not_found", "No such conversation.", "conversation_id") from None


def check_conversation(user: Any, conversation_id: int) -> bool:
    """The user's conversation (not_found otherwise): whether it is a temporary chat."""
    return owned_conversation(user, conversation_id).temporary


def message_is_streaming(user: Any, message_id: int) -> bool:
    """Whether the user's message is still streaming; not_found for anyone else's."""
    return owned_message(user, message_id).status == MessageStatus.STREAMING


def check_awaiting_approval(
    user: Any, conversation_id: int | None, message_id: int, call_id: str, approve: bool
) -> None:
    """The user's streaming answer (in that conversation, if named) has this call waiting for
    approval; not_found otherwise. Only a member of the conversation's team may approve a
    call (it runs on the team's tool server); anyone may decline their own."""
    message = owned_message(user, message_id)
    if conversation_id is not None and message.conversation_id != conversation_id:
        raise ChatError("not_found", "No such message in this conversation.", "message_id")
    waiting = message.status == MessageStatus.STREAMING and any(
        call.get("id") == call_id and call.get("status") == "awaiting_approval"
        for call in message.tool_calls
    )
    if not waiting:
        raise ChatError("not_found", "No call of this answer is waiting for you.", "call_id")
    team_id = message.conversation.team_id
    if approve and not Membership.objects.filter(team_id=team_id, user=user).exists():
        raise ChatError(
            "forbidden", "You are no longer in this conversation's team: the call cannot run."
        )


def conversation_messages(user: Any, conversation_id: int) -> list[StateMessage]:
    """The shown branch of the user's conversation, as conversation.state lists it."""
    conversation = owned_conversation(user, conversation_id)
    branch = tree.conversation_branch(conversation_id, conversation.active_leaf_id)
    rows = list(Message.objects.filter(pk__in=branch.path).values(*STATE_FIELDS))
    files = Upload.objects.filter(message__in=branch.path).by_message()
    help_url = key_help(user, conversation.team_id, rows)
    messages = []
    for row in rows:
        message = _state_message(row, branch.siblings(row["id"]), help_url)
        if row["role"] == MessageRole.USER:
            message["attachments"] = attachment_list(files.get(row["id"], ()))
            message["redactions"] = row["redactions"]
        messages.append(message)
    return messages


def attachment_list(uploads: Iterable[Upload]) -> list[Attachment]:
    """A user message's files as its events list them."""
    return cast(list[Attachment], [upload.summary() for upload in uploads])


def stored_messages(user: Any, message_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Where these answers of the user's conversation stand in the database: their text, seq
    and status (`user`: whose link to the provider page a refused key shows)."""
    stored = {}
    rows = Message.objects.filter(pk__in=message_ids)
    for row in rows.values(*STATE_FIELDS, "conversation__team_id"):
        entry = {key: row[key] for key in ("id", "status", "seq", "tool_calls")}
        entry["content"] = withheld(row)
        if row["status"] != MessageStatus.STREAMING:  # ended meanwhile: what ended it
            help_url = key_help(user, row["conversation__team_id"], [row])
            entry["ended"] = _state_message(row, [], help_url)
        stored[row["id"]] = entry
    return stored


def _state_message(
    row: dict[str, Any], sibling_ids: list[int], help_url: str | None = None
) -> StateMessage:
    message: StateMessage = {
        "id": row["id"],
        "parent_id": row["parent_id"],
        "sibling_ids": sibling_ids,
        "role": row["role"],
        "status": row["status"],
        "content": withheld(row),
        "seq": row["seq"],
    }
    if row["safety"] is not None:
        message["safety"] = row["safety"]
    if row["tool_calls"]:
        message["tool_calls"] = ended_calls(row)
    if row["format"]:
        message["format"] = json_output.shown_format(row["format"])  # type: ignore[typeddict-item]
    if row["role"] == MessageRole.ASSISTANT:
        # What the page shows under a finished answer, as it first loaded it (the JSON API).
        if row["model"]:
            message["model"] = row["model"]
        if (usage := usage_dict(row["prompt_tokens"], row["completion_tokens"])) is not None:
            message["usage"] = cast(UsageFields, usage)
        if row["finish_reason"]:
            message["finish_reason"] = row["finish_reason"]
        if (error := stored_error(row, help_url)) is not None:
            message["error"] = error
    return message


# Why an answer failed, when regenerating it cannot help: its message.error said
# "retryable": false, which a stored error says again by its code.
FINAL_ERRORS = frozenset(
    {
        "auth_failed",
        "bad_request",
        "context_too_long",
        "model_not_found",
        "provider_refused",
        "forbidden",
        "safety_blocked",
        "quota_exceeded",
    }
)


def stored_error(row: dict[str, Any], help_url: str | None = None) -> StoredError | None:
    """Why an answer failed or was cut off, as kept with it; None for one that did not.
    `help_url` is where the viewer fixes a refused key (see provider_page)."""
    code = row["error_code"]
    # A streaming answer's code says only that its question awaits Llama Guard's verdict.
    if not code or row["status"] == MessageStatus.STREAMING:
        return None
    error: StoredError = {
        "code": code,
        "message": row["error_message"],
        "retryable": code not in FINAL_ERRORS,
    }
    if help_url and code == "auth_failed":
        error["help_url"] = help_url
    return error


def provider_page(user: Any, team_id: int | None) -> str | None:
    """Where a refused key is changed, the team's provider page: for its owners, the only
    ones who may open it."""
    if team_id is None:
        return None
    owners = Membership.objects.filter(team_id=team_id, role__in=PERMISSIONS["manage_provider"])
    return reverse("teams:provider", args=[team_id]) if owners.filter(user=user).exists() else None


def key_help(user: Any, team_id: int | None, rows: Iterable[dict[str, Any]]) -> str | None:
    """provider_page, asked only when one of these answers failed on a refused key."""
    if any(row["error_code"] == "auth_failed" for row in rows):
        return provider_page(user, team_id)
    return None


def ended_calls(row: dict[str, Any]) -> list[Any]:
    """An answer's calls; once it ended (a dead process's too), none is left running."""
    if row["status"] == MessageStatus.STREAMING:
        return list(row["tool_calls"])
    return [tooling.unfinished(call) for call in row["tool_calls"]]


def withheld(row: dict[str, Any]) -> str:
    """A message's text as its author may read it: a blocked answer's is kept for reviewers."""
    return "" if row["status"] == MessageStatus.BLOCKED else row["content"]
