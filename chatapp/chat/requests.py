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
class ClientTurn:
    """A user or assistant message of an API request. An assistant turn may hold the calls of
    the client's own functions, each with the result its tool message gave:
    {"id", "name", "arguments", "content"}. A user turn may hold images sent inline, each
    (where it was in the body, its bytes as sent): planning checks and cleans them."""

    role: str
    content: str
    tool_calls: tuple[dict[str, str], ...] = ()
    images: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class CompletionRequest:
    """A validated POST /v1/chat/completions body: the client brings the whole history.

    The turns end with the question (a user turn), or with an assistant turn whose calls the
    client has answered: the model goes on from their results."""

    turns: tuple[ClientTurn, ...]
    system_prompt_text: str | None = None  # the client's system messages, joined
    settings: dict[str, Any] = field(default_factory=dict)
    answer_format: AnswerFormat | None = None  # the body's response_format, when JSON
    format_given: bool = False  # the body sent a response_format (text too): the prompt's yields
    # The client's functions ({"type": "function", "function": {...}}), offered upstream as
    # they are; the client runs them. tool_choice as OpenAI's, None when not sent.
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    stop: tuple[str, ...] = ()  # where the relay cuts the answer (stop_sequences)

    @property
    def uses_tools(self) -> bool:
        return bool(self.tools) or any(turn.tool_calls for turn in self.turns)

    @property
    def images(self) -> tuple[tuple[str, bytes], ...]:
        return tuple(image for turn in self.turns for image in turn.images)

    @property
    def question(self) -> int:
        """The index of the newest user turn."""
        return max(i for i, turn in enumerate(self.turns) if turn.role == "user")
