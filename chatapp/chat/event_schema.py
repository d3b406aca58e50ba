"""The schema of every server -> client event on `/ws/chat/`, one TypedDict per event type.

`chatapp.chat.events` builds these; `check_event` validates a frame the server sent and the
tests run it on every frame a test socket receives. docs/protocol.md describes each event.
"""

from functools import cache
from typing import Any, Literal, NotRequired

from pydantic import ConfigDict, TypeAdapter, with_config
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

STRICT = ConfigDict(extra="forbid", strict=True)

MessageStatusName = Literal["streaming", "complete", "stopped", "interrupted", "error", "blocked"]
SafetyStageName = Literal["input", "output"]
RoleName = Literal["system", "user", "assistant"]


@with_config(STRICT)
class ConversationRef(TypedDict):
    id: int
    title: str


@with_config(STRICT)
class Attachment(TypedDict):
    id: int
    kind: Literal["image", "document"]
    name: str
    content_type: str
    bytes: int
    width: int | None
    height: int | None
    pages: int | None  # a PDF's


@with_config(STRICT)
class SafetyFields(TypedDict):
    """What Llama Guard found about an answer and its question (the team screens either)."""

    flagged: bool
    categories: list[str]  # the Llama Guard codes that counted, such as "S1"
    stages: list[SafetyStageName]  # where it was flagged: the question, the answer
    unscreened: list[SafetyStageName]  # what could not be screened (failing open or closed)


@with_config(STRICT)
class FormatFields(TypedDict):
    """JSON output: the format an answer was asked for and, once it ended, whether it kept to it."""

    type: Literal["json_object", "json_schema"]
    valid: NotRequired[bool]  # absent while the answer streams
    error: NotRequired[str]  # why it is not valid: not JSON, or where it breaks the schema
    name: NotRequired[str | None]  # json_schema: the team schema's name
    schema_id: NotRequired[int | None]  # json_schema: the team schema (null once deleted)


@with_config(STRICT)
class RedactionFields(TypedDict):
    placeholder: str  # what went upstream instead, such as "[EMAIL_1]"
    label: str  # what it replaced, in words: "e-mail address"


@with_config(STRICT)
class CreatedMessage(TypedDict):
    id: int
    conversation_id: int
    parent_id: int | None  # the message it follows (null: a first message)
    sibling_ids: list[int]  # the versions beside it, itself included, oldest first
    role: RoleName
    content: str
    status: MessageStatusName
    attachments: NotRequired[list[Attachment]]  # user messages
    redactions: NotRequired[list[RedactionFields]]  # user messages: the team's data filter


ToolCallStatus = Literal["awaiting_approval", "running", "done"]


@with_config(STRICT)
class ToolCallFields(TypedDict):
    """A tool call an answer made, and once done its result (untrusted text: show as text)."""

    id: str
    name: str
    arguments: str  # the JSON object text the model wrote
    status: ToolCallStatus
    content: str | None  # the result, once done
    is_error: bool
    elapsed: float | None  # seconds the call took, once done
    round: int  # the model's turn that made it: 1, 2, ...
    offset: int  # characters of the answer's text that came before that turn's calls


@with_config(STRICT)
class UsageFields(TypedDict):
    prompt_tokens: int
    completion_tokens: int


@with_config(STRICT)
class StoredError(TypedDict):
    """Why an answer failed, as kept with it."""

    code: str
    message: str
    retryable: bool  # whether regenerating may help, as its message.error said
    help_url: NotRequired[str]  # a refused key, shown to the team's owners


@with_config(STRICT)
class StateMessage(TypedDict):
    id: int
    parent_id: int | None
    sibling_ids: list[int]
    role: RoleName
    status: MessageStatusName
    content: str
    seq: int
    attachments: NotRequired[list[Attachment]]  # user messages
    redactions: NotRequired[list[RedactionFields]]  # user messages: the team's data filter
    safety: NotRequired[SafetyFields]  # answers screened under the team's safety policy
    tool_calls: NotRequired[list[ToolCallFields]]  # answers that called tools
    format: NotRequired[FormatFields]  # answers asked for JSON
    model: NotRequired[str]  # answers: the model that answered
    usage: NotRequired[UsageFields]  # answers that ended with a count
    finish_reason: NotRequired[str]  # answers: the upstream's (stop, length, ...)
    error: NotRequired[StoredError]  # answers that failed or were cut off


@with_config(STRICT)
class AnswerError(TypedDict):
    code: str
    message: str
    retryable: bool
    help_url: NotRequired[str]  # where a team owner fixes it (a refused key: the provider page)
    categories: NotRequired[list[str]]  # safety_blocked: the Llama Guard codes that counted


@with_config(STRICT)
class FrameError(TypedDict):
    code: str
    message: str
    retryable: bool
    field: NotRequired[str]


@with_config(STRICT)
class NewConversation(TypedDict):
    id: int
    title: str
    team_id: int


@with_config(STRICT)
class ConversationCreated(TypedDict):
    type: Literal["conversation.created"]
    request_id: str | None
    conversation: NewConversation


@with_config(STRICT)
class ConversationUpdated(TypedDict):
    """The model named a conversation (chatapp.chat.titles) or its owner renamed it: sent to
    all its owner's sockets."""

    type: Literal["conversation.updated"]
    conversation: ConversationRef


@with_config(STRICT)
class ConversationPinned(TypedDict):
    """Its owner pinned or unpinned a conversation: sent to all their sockets."""

    type: Literal["conversation.pinned"]
    conversation_id: int
    pinned: bool


@with_config(STRICT)
class ConversationDeleted(TypedDict):
    """Its owner deleted a conversation: sent to all their sockets."""

    type: Literal["conversation.deleted"]
    conversation_id: int


@with_config(STRICT)
class TeamLeft(TypedDict):
    """The user's membership of a team ended (left, removed, or the team deleted): sent to all
    their sockets, so a page showing that team can say so."""

    type: Literal["team.left"]
    team_id: int


@with_config(STRICT)
class MessageCreated(TypedDict):
    type: Literal["message.created"]
    conversation_id: int
    request_id: str | None
    message: CreatedMessage
    replaces: NotRequired[int]


@with_config(STRICT)
class MessageDelta(TypedDict):
    type: Literal["message.delta"]
    conversation_id: int
    message_id: int
    seq: int
    text: str


@with_config(STRICT)
class MessageRetrying(TypedDict):
    type: Literal["message.retrying"]
    conversation_id: int
    message_id: int
    attempt: int
    delay: float
    code: str


@with_config(STRICT)
class MessageDone(TypedDict):
    type: Literal["message.done"]
    conversation_id: int
    message_id: int
    status: MessageStatusName
    finish_reason: str | None
    usage: UsageFields | None
    model: str
    safety: NotRequired[SafetyFields]  # present when the team screens questions or answers
    format: NotRequired[FormatFields]  # present when the answer was asked for JSON


@with_config(STRICT)
class MessageToolCall(TypedDict):
    """The answer calls a tool (status running), or waits for the user to approve it."""

    type: Literal["message.tool_call"]
    conversation_id: int
    message_id: int
    call: ToolCallFields


@with_config(STRICT)
class MessageToolResult(TypedDict):
    type: Literal["message.tool_result"]
    conversation_id: int
    message_id: int
    call_id: str
    content: str
    is_error: bool
    elapsed: float
    call: ToolCallFields


@with_config(STRICT)
class MessageError(TypedDict):
    type: Literal["message.error"]
    conversation_id: int
    message_id: int
    error: AnswerError


@with_config(STRICT)
class ConversationState(TypedDict):
    type: Literal["conversation.state"]
    conversation_id: int
    messages: list[StateMessage]


@with_config(STRICT)
class ConversationSwitched(TypedDict):
    """Another branch is shown now (chat.switch from some tab): subscribe again to see it."""

    type: Literal["conversation.switched"]
    conversation_id: int
    leaf_id: int


@with_config(STRICT)
class Error(TypedDict):
    type: Literal["error"]
    request_id: str | None
    error: FrameError


# Conversation events go to a conversation's group and are relayed to its sockets as they are.
ConversationEvent = (
    MessageCreated
    | MessageDelta
    | MessageRetrying
    | MessageDone
    | MessageError
    | MessageToolCall
    | MessageToolResult
    | ConversationSwitched
)
ServerEvent = (
    ConversationCreated
    | ConversationUpdated
    | ConversationPinned
    | ConversationDeleted
    | TeamLeft
    | ConversationEvent
    | ConversationState
    | Error
)

SCHEMAS: dict[str, type[Any]] = {
    "conversation.created": ConversationCreated,
    "conversation.updated": ConversationUpdated,
    "conversation.pinned": ConversationPinned,
    "conversation.deleted": ConversationDeleted,
    "team.left": TeamLeft,
    "message.created": MessageCreated,
    "message.delta": MessageDelta,
    "message.retrying": MessageRetrying,
    "message.done": MessageDone,
    "message.error": MessageError,
    "message.tool_call": MessageToolCall,
    "message.tool_result": MessageToolResult,
    "conversation.state": ConversationState,
    "conversation.switched": ConversationSwitched,
    "error": Error,
}
EVENT_TYPES = frozenset(SCHEMAS)


@cache
def _adapters() -> dict[str, TypeAdapter[Any]]:
    """Built on first use, all at once: the server itself never validates its events."""
    return {kind: TypeAdapter(schema) for kind, schema in SCHEMAS.items()}


class EventSchemaError(ValueError):
    """A server event that does not match its schema."""


def check_event(event: object) -> str:
    """Validate one server event (a decoded frame); returns its type or raises EventSchemaError."""
    if not isinstance(event, dict):
        raise EventSchemaError(f"An event must be an object, not {type(event).__name__}.")
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise EventSchemaError(f"Unknown event type {kind!r}.")
    try:
        _adapters()[kind].validate_python(event)
    except ValueError as error:
        raise EventSchemaError(f"{kind}: {error}") from None
    return str(kind)
