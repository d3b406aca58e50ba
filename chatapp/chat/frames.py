"""Client frames of the chat websocket, checked before anything acts on them."""

import json
from collections.abc import Mapping
from typing import Any

import orjson

from chatapp.chat import json_output
from chatapp.chat.errors import ChatError
from chatapp.chat.requests import RegenerateRequest, SendRequest
from chatapp.core.api import MAX_ID
from chatapp.teams.models import SystemPrompt
from chatapp.teams.policy import SETTING_NAMES

REQUEST_ID_LENGTH = 100
# A custom system prompt may be as long as a team's own prompts.
SYSTEM_PROMPT_MAX_LENGTH: int = SystemPrompt._meta.get_field("content").max_length or 20_000
FRAME_OVERHEAD_BYTES = 16_384  # room for the fields around the content
JSON_ESCAPE_FACTOR = 6  # any character may arrive as a six-character \\uXXXX escape
# The longest frame read as a possible chat.stop before the rate limit: a stop with the
# longest request_id and id fits in under 200 characters.
STOP_FRAME_MAX_LENGTH = 256


def encode(event: Mapping[str, Any]) -> str:
    """A server frame's JSON text. orjson writes it in about a tenth of the time `json.dumps`
    takes, and frames go out at token rate; what it refuses (a lone surrogate, which
    `json.dumps` escapes) goes the slow way."""
    try:
        return orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(event)


def decode(text_data: str | None, max_content_bytes: int) -> dict[str, Any]:
    if text_data is None:
        raise ChatError("invalid_frame", "Send JSON text frames, not binary ones.")
    # A cheap outer bound before parsing; the content itself is measured once decoded.
    if len(text_data) > JSON_ESCAPE_FACTOR * max_content_bytes + FRAME_OVERHEAD_BYTES:
        raise _too_large(max_content_bytes)
    try:
        frame = json.loads(text_data)
    except (ValueError, RecursionError):
        raise ChatError("invalid_json", "The frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise ChatError("invalid_frame", "A frame must be a JSON object with a type.")
    return frame


def stop_frame(text_data: str | None) -> dict[str, Any] | None:
    """The frame, if it is a short `chat.stop`; None for any other frame, read or not."""
    if text_data is None or len(text_data) > STOP_FRAME_MAX_LENGTH or "chat.stop" not in text_data:
        return None
    try:
        frame = json.loads(text_data)
    except (ValueError, RecursionError):
        return None
    return frame if isinstance(frame, dict) and frame.get("type") == "chat.stop" else None


def request_id_of(frame: dict[str, Any]) -> str | None:
    value = frame.get("request_id")
    return value if isinstance(value, str) and len(value) <= REQUEST_ID_LENGTH else None


def check_request_id(frame: dict[str, Any]) -> None:
    value = frame.get("request_id")
    if value is not None and (not isinstance(value, str) or len(value) > REQUEST_ID_LENGTH):
        raise ChatError(
            "invalid_frame",
            f"request_id must be a string of at most {REQUEST_ID_LENGTH} characters.",
            "request_id",
        )


def object_id(frame: dict[str, Any], name: str) -> int:
    """A required id field of the frame."""
    value = optional_object_id(frame, name)
    if value is None:
        raise ChatError("invalid_frame", f"The frame needs {name}.", name)
    return value


def optional_object_id(frame: dict[str, Any], name: str) -> int | None:
    value = frame.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise ChatError("invalid_frame", f"{name} must be a positive integer.", name)
    return value


def send_request(
    frame: dict[str, Any], max_content_bytes: int, *, files_elsewhere: bool = False
) -> SendRequest:
    """A chat.send (or the new version a chat.edit sends). `files_elsewhere`: files the frame
    does not list may come with it (an edit keeping its question's), so blank text may do."""
    content = frame.get("content")
    if not isinstance(content, str):
        raise ChatError(
            "invalid_frame", "The frame needs content: the text of your message.", "content"
        )
    if len(content.encode("utf-8", "surrogatepass")) > max_content_bytes:
        raise _too_large(max_content_bytes)
    check_text(content, "content", "The message")
    attachments = _attachments(frame.get("attachments"))
    if not content.strip() and not attachments and not files_elsewhere:
        raise ChatError("empty_content", "Write a message first.", "content")
    settings, prompt_text = _settings(frame.get("settings"))
    tools, response_format = _tools_and_format(frame)
    conversation_id = optional_object_id(frame, "conversation_id")
    temporary = frame.get("temporary", False)
    if not isinstance(temporary, bool):
        raise ChatError("invalid_frame", "temporary must be true or false.", "temporary")
    if temporary and conversation_id is not None:
        raise ChatError(
            "invalid_frame",
            "Only a new conversation can be made temporary (conversation_id null).",
            "temporary",
        )
    team_id = optional_object_id(frame, "team_id")
    if team_id is not None and conversation_id is not None:
        raise ChatError(
            "invalid_frame",
            "team_id names where a new conversation starts (conversation_id null).",
            "team_id",
        )
    return SendRequest(
        tools=tools,
        content=content,
        conversation_id=conversation_id,
        temporary=temporary,
        team_id=team_id,
        system_prompt_id=optional_object_id(frame, "system_prompt_id"),
        settings=settings,
        system_prompt_text=prompt_text,
        attachments=attachments,
        response_format=response_format,
    )


def edit_request(frame: dict[str, Any], max_content_bytes: int) -> tuple[int, SendRequest, bool]:
    """A chat.edit: the question edited, its new version (text, files, settings), and whether
    that keeps the question's files (`attachments` left out or null: all of them)."""
    message_id = object_id(frame, "message_id")
    unknown = {"conversation_id", "system_prompt_id", "temporary", "team_id"} & set(frame)
    if unknown:
        name = sorted(unknown)[0]
        raise ChatError("invalid_frame", f"chat.edit takes no {name}.", name)
    keeps_files = frame.get("attachments") is None  # left out or null: "as they are"
    request = send_request(frame, max_content_bytes, files_elsewhere=keeps_files)
    if request.system_prompt_text is not None:
        raise ChatError(
            "invalid_frame", "An edit keeps the conversation's system prompt.", "system_prompt"
        )
    return message_id, request, keeps_files


def regenerate_request(frame: dict[str, Any]) -> RegenerateRequest:
    """A chat.regenerate: the answer written again, with the settings changed meanwhile."""
    message_id = object_id(frame, "message_id")
    settings, prompt_text = _settings(frame.get("settings"))
    if prompt_text is not None:
        raise ChatError(
            "invalid_frame", "A new answer keeps the conversation's system prompt.", "system_prompt"
        )
    tools, response_format = _tools_and_format(frame)
    return RegenerateRequest(message_id, settings, tools, response_format)


def _tools_and_format(frame: dict[str, Any]) -> tuple[bool | None, tuple[str, int | None] | None]:
    """settings.tools and settings.response_format (None where left out)."""
    settings = frame.get("settings") or {}
    tools = settings.get("tools")
    if tools is not None and not isinstance(tools, bool):
        raise ChatError("invalid_frame", "settings.tools must be true or false.", "tools")
    return tools, json_output.requested_format(settings.get("response_format"))


def _attachments(value: object) -> tuple[int, ...]:
    """Upload ids; whose they are and how many a message may carry is checked when planning."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) and 0 < item <= MAX_ID
        for item in value
    ):
        raise ChatError("invalid_frame", "attachments must be a list of upload ids.", "attachments")
    if len(set(value)) != len(value):
        raise ChatError("invalid_frame", "An upload is attached twice.", "attachments")
    return tuple(value)


def _settings(value: object) -> tuple[dict[str, Any], str | None]:
    """The requested model settings, and a custom system prompt if one was given."""
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        raise ChatError("invalid_frame", "settings must be an object.", "settings")
    unknown = set(value) - set(SETTING_NAMES) - {"system_prompt", "tools", "response_format"}
    if unknown:
        names = ", ".join(sorted(unknown))
        raise ChatError("invalid_frame", f"Unknown settings: {names}.", "settings")
    prompt = value.get("system_prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ChatError("invalid_frame", "settings.system_prompt must be text.", "system_prompt")
    if prompt is not None:
        if len(prompt) > SYSTEM_PROMPT_MAX_LENGTH:
            raise ChatError(
                "content_too_large",
                f"The system prompt is longer than {SYSTEM_PROMPT_MAX_LENGTH} characters:"
                " shorten it.",
                "system_prompt",
            )
        check_text(prompt, "system_prompt", "The system prompt")
    return {k: v for k, v in value.items() if k in SETTING_NAMES}, prompt


def check_text(text: str, field: str, what: str) -> None:
    """Text that can be stored and sent on: no lone surrogates (not UTF-8) and no NUL
    characters (PostgreSQL refuses them), checked before anything is written or sent."""
    if "\x00" in text:
        raise ChatError("invalid_text", f"{what} contains a NUL character: remove it.", field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ChatError(
            "invalid_text",
            f"{what} contains an unpaired surrogate (\\ud800-\\udfff), which is not text:"
            " send valid UTF-8.",
            field,
        ) from None


def _too_large(max_content_bytes: int) -> ChatError:
    return ChatError(
        "content_too_large",
        f"The message is longer than {max_content_bytes} bytes: shorten it or split it up.",
        "content",
    )


CALL_ID_LENGTH = 200


def tool_decision(frame: dict[str, Any]) -> tuple[int | None, int, str, bool]:
    """A chat.tool_decision: the conversation (optional), the answer, the call waiting on the
    user, and their decision."""
    conversation_id = optional_object_id(frame, "conversation_id")
    message_id = object_id(frame, "message_id")
    call_id = frame.get("call_id")
    if not isinstance(call_id, str) or not call_id or len(call_id) > CALL_ID_LENGTH:
        raise ChatError(
            "invalid_frame",
            f"call_id must be a call's id (at most {CALL_ID_LENGTH} characters).",
            "call_id",
        )
    approve = frame.get("approve")
    if not isinstance(approve, bool):
        raise ChatError("invalid_frame", "approve must be true or false.", "approve")
    return conversation_id, message_id, call_id, approve
