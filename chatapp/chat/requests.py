"""Validated client requests, as the planning functions take them."""

from dataclasses import dataclass, field
from typing import Any

from chatapp.chat.json_output import AnswerFormat


@dataclass(frozen=True)
class SendRequest:
    """A validated chat.send frame."""

    content: str
    conversation_id: int | None = None
    system_prompt_id: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    system_prompt_text: str | None = None
    attachments: tuple[int, ...] = ()  # upload ids, in the order the user attached them
    tools: bool | None = None  # settings.tools: offer the team's tools here (None: unchanged)
    temporary: bool = False  # start a temporary chat (a new conversation only)
    team_id: int | None = None  # the team a new conversation starts in (None: the session's)
    # settings.response_format: ("text" | "json_object" | "json_schema", schema id or None)
    response_format: tuple[str, int | None] | None = None


@dataclass(frozen=True)
class RegenerateRequest:
    """A validated chat.regenerate frame: the answer to write again, and what the chat's
    settings panel changed meanwhile (the same settings as a send, without a system prompt)."""

    message_id: int
    settings: dict[str, Any] = field(default_factory=dict)
    tools: bool | None = None
    response_format: tuple[str, int | None] | None = None


@dataclass(frozen=True)
class CompletionRequest:
    """A validated POST /v1/chat/completions body: the client brings the whole history."""

    turns: tuple[tuple[str, str], ...]  # (role, text), user and assistant, ending with user
    system_prompt_text: str | None = None  # the client's system messages, joined
    settings: dict[str, Any] = field(default_factory=dict)
    answer_format: AnswerFormat | None = None  # the body's response_format, when JSON
