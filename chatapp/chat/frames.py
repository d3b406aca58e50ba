"""Client frames of the chat websocket, checked before anything acts on them."""

import json

from chatapp.chat.actions import SETTING_NAMES, ChatError, SendRequest

REQUEST_ID_LENGTH = 100
FRAME_OVERHEAD_BYTES = 16_384  # room for the fields around the content
JSON_ESCAPE_FACTOR = 6  # any character may arrive as a six-character \\uXXXX escape


def decode(text_data: str | None, max_content_bytes: int) -> dict:
    if text_data is None:
        raise ChatError("invalid_frame", "Send JSON text frames, not binary ones.")
    # A cheap outer bound before parsing; the content itself is measured once decoded.
    if len(text_data) > JSON_ESCAPE_FACTOR * max_content_bytes + FRAME_OVERHEAD_BYTES:
        raise _too_large(max_content_bytes)
    try:
        frame = json.loads(text_data)
    except ValueError:
        raise ChatError("invalid_json", "The frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise ChatError("invalid_frame", "A frame must be a JSON object with a type.")
    return frame


def request_id_of(frame: dict) -> str | None:
    value = frame.get("request_id")
    return value if isinstance(value, str) and len(value) <= REQUEST_ID_LENGTH else None


def check_request_id(frame: dict) -> None:
    value = frame.get("request_id")
    if value is not None and (not isinstance(value, str) or len(value) > REQUEST_ID_LENGTH):
        raise ChatError(
            "invalid_frame",
            f"request_id must be a string of at most {REQUEST_ID_LENGTH} characters.",
            "request_id",
        )


def object_id(frame: dict, name: str, *, required: bool = True) -> int | None:
    value = frame.get(name)
    if value is None and not required:
        return None
    if value is None:
        raise ChatError("invalid_frame", f"The frame needs {name}.", name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ChatError("invalid_frame", f"{name} must be a positive integer.", name)
    return value


def send_request(frame: dict, max_content_bytes: int) -> SendRequest:
    check_request_id(frame)
    content = frame.get("content")
    if not isinstance(content, str):
        raise ChatError(
            "invalid_frame", "The frame needs content: the text of your message.", "content"
        )
    if len(content.encode("utf-8", "surrogatepass")) > max_content_bytes:
        raise _too_large(max_content_bytes)
    if not content.strip():
        raise ChatError("empty_content", "Write a message first.", "content")
    settings, prompt_text = _settings(frame.get("settings"))
    return SendRequest(
        content=content,
        conversation_id=object_id(frame, "conversation_id", required=False),
        system_prompt_id=object_id(frame, "system_prompt_id", required=False),
        settings=settings,
        system_prompt_text=prompt_text,
    )


def _settings(value) -> tuple[dict, str | None]:
    """The requested model settings, and a custom system prompt if one was given."""
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        raise ChatError("invalid_frame", "settings must be an object.", "settings")
    unknown = set(value) - set(SETTING_NAMES) - {"system_prompt"}
    if unknown:
        names = ", ".join(sorted(unknown))
        raise ChatError("invalid_frame", f"Unknown settings: {names}.", "settings")
    prompt = value.get("system_prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ChatError("invalid_frame", "settings.system_prompt must be text.", "system_prompt")
    return {k: v for k, v in value.items() if k in SETTING_NAMES}, prompt


def _too_large(max_content_bytes: int) -> ChatError:
    return ChatError(
        "content_too_large",
        f"The message is longer than {max_content_bytes} bytes: shorten it or split it up.",
        "content",
    )
