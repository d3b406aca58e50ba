"""Every server -> client event of `/ws/chat/`, built in one place.

The consumer, the generations, the reaper and the reply actions call these; nothing else
assembles an event. The shapes are in `chatapp.chat.event_schema` and docs/protocol.md.
"""

from typing import Any, cast

from chatapp.chat.event_schema import (
    AnswerError,
    ConversationCreated,
    ConversationDeleted,
    ConversationPinned,
    ConversationState,
    ConversationSwitched,
    ConversationUpdated,
    CreatedMessage,
    Error,
    FormatFields,
    FrameError,
    MessageCreated,
    MessageDelta,
    MessageDone,
    MessageError,
    MessageRetrying,
    MessageStatusName,
    MessageToolCall,
    MessageToolResult,
    SafetyFields,
    StateMessage,
    TeamLeft,
    ToolCallFields,
    UsageFields,
)
from chatapp.llm import Usage


def conversation_created(
    request_id: str | None, conversation_id: int, title: str, team_id: int
) -> ConversationCreated:
    return {
        "type": "conversation.created",
        "request_id": request_id,
        "conversation": {"id": conversation_id, "title": title, "team_id": team_id},
    }


def conversation_updated(conversation_id: int, title: str) -> ConversationUpdated:
    return {"type": "conversation.updated", "conversation": {"id": conversation_id, "title": title}}


def conversation_pinned(conversation_id: int, pinned: bool) -> ConversationPinned:
    return {"type": "conversation.pinned", "conversation_id": conversation_id, "pinned": pinned}


def conversation_deleted(conversation_id: int) -> ConversationDeleted:
    return {"type": "conversation.deleted", "conversation_id": conversation_id}


def team_left(team_id: int) -> TeamLeft:
    return {"type": "team.left", "team_id": team_id}


def message_created(
    request_id: str | None, message: CreatedMessage, replaces: int | None = None
) -> MessageCreated:
    event: MessageCreated = {
        "type": "message.created",
        "conversation_id": message["conversation_id"],
        "request_id": request_id,
        "message": message,
    }
    if replaces is not None:
        event["replaces"] = replaces
    return event


def message_delta(conversation_id: int, message_id: int, seq: int, text: str) -> MessageDelta:
    return {
        "type": "message.delta",
        "conversation_id": conversation_id,
        "message_id": message_id,
        "seq": seq,
        "text": text,
    }


def message_retrying(
    conversation_id: int, message_id: int, attempt: int, delay: float, code: str
) -> MessageRetrying:
    return {
        "type": "message.retrying",
        "conversation_id": conversation_id,
        "message_id": message_id,
        "attempt": attempt,
        "delay": round(delay, 2),
        "code": code,
    }


def message_done(
    conversation_id: int,
    message_id: int,
    *,
    status: MessageStatusName,
    model: str,
    finish_reason: str | None = None,
    usage: Usage | None = None,
    safety: SafetyFields | None = None,
    answer_format: FormatFields | dict[str, Any] | None = None,
) -> MessageDone:
    counts: UsageFields | None = None
    if usage is not None:
        counts = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
        }
    done: MessageDone = {
        "type": "message.done",
        "conversation_id": conversation_id,
        "message_id": message_id,
        "status": status,
        "finish_reason": finish_reason,
        "usage": counts,
        "model": model,
    }
    if safety is not None:
        done["safety"] = safety
    if answer_format is not None:
        done["format"] = answer_format  # type: ignore[typeddict-item]  # checked by the schema
    return done


def message_error(
    conversation_id: int,
    message_id: int,
    code: str,
    message: str,
    *,
    retryable: bool,
    help_url: str | None = None,
    categories: list[str] | None = None,
) -> MessageError:
    error: AnswerError = {"code": code, "message": message, "retryable": retryable}
    if help_url:
        error["help_url"] = help_url
    if categories is not None:
        error["categories"] = categories
    return {
        "type": "message.error",
        "conversation_id": conversation_id,
        "message_id": message_id,
        "error": error,
    }


def message_tool_call(
    conversation_id: int, message_id: int, call: dict[str, Any]
) -> MessageToolCall:
    return {
        "type": "message.tool_call",
        "conversation_id": conversation_id,
        "message_id": message_id,
        "call": cast(ToolCallFields, call),
    }


def message_tool_result(
    conversation_id: int, message_id: int, call: dict[str, Any]
) -> MessageToolResult:
    return {
        "type": "message.tool_result",
        "conversation_id": conversation_id,
        "message_id": message_id,
        "call_id": call["id"],
        "content": call["content"] or "",
        "is_error": bool(call["is_error"]),
        "elapsed": float(call["elapsed"] or 0.0),
        "call": cast(ToolCallFields, call),
    }


def conversation_state(conversation_id: int, messages: list[StateMessage]) -> ConversationState:
    return {"type": "conversation.state", "conversation_id": conversation_id, "messages": messages}


def conversation_switched(conversation_id: int, leaf_id: int) -> ConversationSwitched:
    return {"type": "conversation.switched", "conversation_id": conversation_id, "leaf_id": leaf_id}


# Refusals that a second try may get past (the page offers Retry only for these).
RETRYABLE_ERRORS = frozenset({"rate_limited", "conversation_busy", "internal_error"})


def error(request_id: str | None, code: str, message: str, field: str | None = None) -> Error:
    details: FrameError = {"code": code, "message": message, "retryable": code in RETRYABLE_ERRORS}
    if field:
        details["field"] = field
    return {"type": "error", "request_id": request_id, "error": details}
