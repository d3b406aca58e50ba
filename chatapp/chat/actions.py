"""The chat's write path: each action's database changes, and the broadcasts that follow them.

The sync functions run in a worker thread (`database_sync_to_async`); the async ones write
through such a thread and broadcast once the write has committed.
"""

import logging
from dataclasses import dataclass, field
from importlib import import_module
from types import SimpleNamespace

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from chatapp.chat.history import build_history, title_from
from chatapp.chat.models import (
    Conversation,
    Message,
    MessageRole,
    MessageStatus,
    get_conversation_for_user,
    get_message_for_user,
)
from chatapp.llm import ChatParams, StreamError, Usage
from chatapp.teams import policy
from chatapp.teams.models import Membership, SystemPrompt
from chatapp.teams.services import current_team

log = logging.getLogger(__name__)

SETTING_NAMES = ("model", "temperature", "max_tokens", "top_p")


class ChatError(Exception):
    """A request the chat refuses; `code` is stable, `message` tells the user what to do."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def conversation_group(conversation_id: int) -> str:
    return f"chat.conversation.{conversation_id}"


def generation_group(message_id: int) -> str:
    return f"chat.generation.{message_id}"


@dataclass
class SendRequest:
    """A validated chat.send frame."""

    content: str
    conversation_id: int | None = None
    system_prompt_id: int | None = None
    settings: dict = field(default_factory=dict)
    system_prompt_text: str | None = None


@dataclass
class ReplyPlan:
    """Everything needed to ask the model for an answer, worked out before any write."""

    user: object
    team: object
    conversation: Conversation
    messages: list[dict]
    params: ChatParams
    client: object
    request_id: str | None = None
    user_content: str | None = None
    replaces: Message | None = None
    conversation_fields: list[str] = field(default_factory=list)


@dataclass
class Exchange:
    """The rows start_reply wrote: the (maybe new) conversation and its new messages."""

    conversation_id: int
    title: str
    created: bool
    user_message: dict | None
    assistant_message: dict
    replaces: int | None = None


# --- planning (reads only) ---------------------------------------------------------------


def plan_send(user, session_key: str | None, request: SendRequest) -> ReplyPlan:
    if request.conversation_id is None:
        conversation = _new_conversation(user, session_key, request)
        turns: list[dict] = []
    else:
        conversation = _conversation_for_reply(user, request.conversation_id)
        _change_prompt(conversation, request)
        turns = _turns(conversation)
    rules = policy.team_rules(conversation.team)  # read once for settings, provider and quota
    fields = _apply_settings(user, conversation, request.settings, rules)
    turns.append({"role": MessageRole.USER, "content": request.content})
    plan = _plan(user, conversation, turns, rules)
    plan.user_content = request.content
    plan.conversation_fields = fields
    return plan


def plan_regenerate(user, message_id: int) -> ReplyPlan:
    message = _owned_message(user, message_id)
    if message.role != MessageRole.ASSISTANT:
        raise ChatError("invalid_frame", "Only an answer can be regenerated.", "message_id")
    conversation = _conversation_for_reply(user, message.conversation_id)
    last = conversation.messages.order_by("-id").only("id").first()
    if last is None or last.pk != message.pk:
        raise ChatError("not_last_message", "Only the last answer can be regenerated.")
    turns = _turns(conversation, before_id=message.pk)
    if not turns or turns[-1]["role"] != MessageRole.USER:
        raise ChatError("invalid_frame", "There is no question to answer again.", "message_id")
    rules = policy.team_rules(conversation.team)
    fields = _apply_settings(user, conversation, {}, rules)
    plan = _plan(user, conversation, turns, rules)
    plan.replaces = message
    plan.conversation_fields = fields
    return plan


def _plan(
    user, conversation: Conversation, turns: list[dict], rules: policy.TeamRules
) -> ReplyPlan:
    team = conversation.team
    params = ChatParams(
        model=conversation.model,
        temperature=conversation.temperature,
        top_p=conversation.top_p,
        max_tokens=conversation.max_tokens,
    )
    messages = build_history(
        conversation.system_prompt_text, turns, params.model, params.max_tokens
    )
    _check_concurrency(user)
    try:
        client = policy.llama_client(team, rules)
        policy.check_quota(user, team, rules)  # last: an admitted request counts against the quota
    except policy.PolicyError as error:
        raise ChatError(error.code, error.message, error.field) from None
    return ReplyPlan(user, team, conversation, messages, params, client)


def _check_concurrency(user) -> None:
    streaming = Message.objects.filter(
        conversation__owner=user, role=MessageRole.ASSISTANT, status=MessageStatus.STREAMING
    ).count()
    cap = settings.CHAT_MAX_CONCURRENT_GENERATIONS
    if streaming >= cap:
        raise ChatError(
            "rate_limited",
            f"You already have {streaming} answers streaming (the limit is {cap}):"
            " wait for one to finish or stop it.",
        )


def _team_for_session(user, session_key: str | None):
    """The session's current team, read fresh so a team switch in another tab counts."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return current_team(SimpleNamespace(user=user, session=store))


def _new_conversation(user, session_key: str | None, request: SendRequest) -> Conversation:
    team = _team_for_session(user, session_key)
    prompt = _prompt_for(team, request.system_prompt_id)
    conversation = Conversation(team=team, owner=user, title=title_from(request.content))
    conversation.system_prompt = prompt
    conversation.system_prompt_text = prompt.content if prompt else ""
    conversation.system_prompt_locked = bool(prompt and prompt.locked)
    if request.system_prompt_text is not None:
        _refuse_if_locked(conversation)
        conversation.system_prompt_text = request.system_prompt_text
    return conversation


def _prompt_for(team, prompt_id: int | None) -> SystemPrompt | None:
    prompts = SystemPrompt.objects.for_team(team)
    if prompt_id is None:
        return prompts.filter(is_default=True).first()
    prompt = prompts.filter(pk=prompt_id).first()
    if prompt is None:
        raise ChatError("not_found", "No such system prompt in your team.", "system_prompt_id")
    return prompt


def _change_prompt(conversation: Conversation, request: SendRequest) -> None:
    """A later send may pick another prompt, unless the conversation's prompt is locked."""
    wants_other = (
        request.system_prompt_id is not None
        and request.system_prompt_id != conversation.system_prompt_id
    )
    if not wants_other and request.system_prompt_text is None:
        return
    _refuse_if_locked(conversation)
    if wants_other:
        prompt = _prompt_for(conversation.team, request.system_prompt_id)
        conversation.system_prompt = prompt
        conversation.system_prompt_text = prompt.content
        conversation.system_prompt_locked = prompt.locked
    if request.system_prompt_text is not None:
        conversation.system_prompt_text = request.system_prompt_text


def _refuse_if_locked(conversation: Conversation) -> None:
    if conversation.system_prompt_locked:
        raise ChatError(
            "prompt_locked",
            "This conversation's system prompt is locked by your team's admins.",
            "system_prompt",
        )


def _conversation_for_reply(user, conversation_id: int) -> Conversation:
    try:
        conversation = get_conversation_for_user(user, conversation_id)
    except Http404:
        raise ChatError("not_found", "No such conversation.", "conversation_id") from None
    if not Membership.objects.filter(team=conversation.team, user=user).exists():
        raise ChatError(
            "forbidden", "You are no longer in this conversation's team: start a new one."
        )
    if conversation.messages.filter(status=MessageStatus.STREAMING).exists():
        raise ChatError(
            "conversation_busy", "An answer is still streaming here: wait for it or stop it."
        )
    return conversation


def _owned_message(user, message_id: int) -> Message:
    try:
        return get_message_for_user(user, message_id)
    except Http404:
        raise ChatError("not_found", "No such message.", "message_id") from None


def _turns(conversation: Conversation, before_id: int | None = None) -> list[dict]:
    """The conversation so far as upstream messages; failed or empty answers are left out."""
    rows = conversation.messages.filter(role__in=[MessageRole.USER, MessageRole.ASSISTANT])
    if before_id is not None:
        rows = rows.filter(pk__lt=before_id)
    rows = rows.exclude(status=MessageStatus.ERROR).exclude(content="")
    return [
        {"role": role, "content": content} for role, content in rows.values_list("role", "content")
    ]


def _apply_settings(
    user, conversation: Conversation, requested: dict, rules: policy.TeamRules
) -> list[str]:
    """Resolve the settings through the team's policy; returns the fields that changed."""
    current = conversation.settings if conversation.pk else {}
    merged = {**current, **{k: v for k, v in requested.items() if v is not None}}
    try:
        resolved = policy.effective_settings(user, conversation.team, merged, rules)
    except policy.PolicyError as error:
        raise ChatError(error.code, error.message, error.field) from None
    changed = []
    for name in SETTING_NAMES:
        if getattr(conversation, name) != resolved.get(name):
            setattr(conversation, name, resolved.get(name))
            changed.append(name)
    return changed


# --- writes --------------------------------------------------------------------------------


def start_reply(plan: ReplyPlan) -> Exchange:
    """Save the question (or drop the answer being regenerated) and the answer to stream."""
    conversation = plan.conversation
    created = conversation.pk is None
    with transaction.atomic():
        # Sends racing on other sockets or processes queue here, so the cap holds for them too.
        get_user_model().objects.select_for_update().only("pk").get(pk=plan.user.pk)
        _check_concurrency(plan.user)
        if created:
            conversation.save()
        else:
            prompt_fields = ["system_prompt", "system_prompt_text", "system_prompt_locked"]
            conversation.save(
                update_fields=[*plan.conversation_fields, *prompt_fields, "updated_at"]
            )
        replaces = None
        if plan.replaces is not None:
            replaces = plan.replaces.pk
            plan.replaces.delete()
        user_message = None
        if plan.user_content is not None:
            user_message = Message.objects.create(
                conversation=conversation, role=MessageRole.USER, content=plan.user_content
            )
        assistant = Message.objects.create(
            conversation=conversation,
            role=MessageRole.ASSISTANT,
            status=MessageStatus.STREAMING,
            model=plan.params.model,
            heartbeat_at=timezone.now(),
        )
    return Exchange(
        conversation_id=conversation.pk,
        title=conversation.title,
        created=created,
        user_message=message_frame(user_message) if user_message else None,
        assistant_message=message_frame(assistant),
        replaces=replaces,
    )


def message_frame(message: Message) -> dict:
    return {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
    }


async def broadcast(conversation_id: int, event: dict) -> None:
    """Send an event to the conversation's sockets; the database stays the source of truth.

    A channel layer that is down loses the event (logged): sockets that resubscribe get the
    stored state.
    """
    try:
        await get_channel_layer().group_send(conversation_group(conversation_id), event)
    except Exception:
        log.warning("Could not broadcast %s to conversation %s", event["type"], conversation_id)


async def announce_reply(exchange: Exchange, request_id: str | None) -> None:
    """Tell every tab on the conversation about the new messages, before any delta."""
    created = [exchange.user_message, exchange.assistant_message]
    for message in filter(None, created):
        event = {
            "type": "message.created",
            "conversation_id": exchange.conversation_id,
            "request_id": request_id,
            "message": message,
        }
        if exchange.replaces and message is exchange.assistant_message:
            event["replaces"] = exchange.replaces
        await broadcast(exchange.conversation_id, event)


def checkpoint_reply(message_id: int, content: str, seq: int) -> None:
    """Save the text so far and prove the generating process is alive (one UPDATE)."""
    Message.objects.filter(pk=message_id, status=MessageStatus.STREAMING).update(
        content=content, seq=seq, heartbeat_at=timezone.now()
    )


@dataclass
class ReplyResult:
    """How an answer ended, as the generation runner saw it."""

    message_id: int
    conversation_id: int
    status: str
    content: str
    seq: int
    model: str
    finish_reason: str | None = None
    usage: Usage | None = None
    time_to_first_token_ms: int | None = None
    duration_ms: int | None = None
    upstream_request_id: str | None = None
    error: StreamError | None = None


def save_reply(result: ReplyResult, team, user) -> bool:
    """The final write of an answer; False when the message was deleted meanwhile."""
    error = result.error
    values = {
        "status": result.status,
        "content": result.content,
        "seq": result.seq,
        "model": result.model,
        "finish_reason": result.finish_reason or "",
        "prompt_tokens": result.usage.prompt_tokens if result.usage else None,
        "completion_tokens": result.usage.completion_tokens if result.usage else None,
        "time_to_first_token_ms": result.time_to_first_token_ms,
        "duration_ms": result.duration_ms,
        "upstream_request_id": (result.upstream_request_id or "")[:200],
        "error_code": error.code[:40] if error else "",
        "error_message": error.message[:500] if error else "",
        "heartbeat_at": timezone.now(),
        "updated_at": timezone.now(),
    }
    saved = Message.objects.filter(pk=result.message_id).update(**values) == 1
    if saved and result.usage:
        usage = result.usage
        policy.record_usage(team, user, result.model, usage.prompt_tokens, usage.completion_tokens)
    return saved


async def finish_reply(result: ReplyResult, team, user) -> None:
    """Write the answer's end, then broadcast it (message.error and/or message.done)."""
    await database_sync_to_async(save_reply)(result, team, user)
    base = {"message_id": result.message_id, "conversation_id": result.conversation_id}
    if result.error is not None:
        error = {
            "code": result.error.code,
            "message": result.error.message,
            "retryable": result.error.retryable,
        }
        await broadcast(result.conversation_id, {"type": "message.error", **base, "error": error})
    if result.status == MessageStatus.ERROR:
        return  # nothing was shown: the error frame is the whole story
    usage = result.usage
    done = {
        "type": "message.done",
        **base,
        "status": result.status,
        "finish_reason": result.finish_reason,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
        }
        if usage
        else None,
    }
    await broadcast(result.conversation_id, done)


# --- stop and subscribe --------------------------------------------------------------------


def message_is_streaming(user, message_id: int) -> bool:
    """Whether the user's message is still streaming; not_found for anyone else's."""
    return _owned_message(user, message_id).status == MessageStatus.STREAMING


async def request_stop(message_id: int) -> None:
    await get_channel_layer().group_send(
        generation_group(message_id), {"type": "generation.stop", "message_id": message_id}
    )


async def request_snapshot(message_id: int, reply_channel: str) -> None:
    await get_channel_layer().group_send(
        generation_group(message_id),
        {
            "type": "generation.snapshot_request",
            "message_id": message_id,
            "reply_channel": reply_channel,
        },
    )


def check_conversation(user, conversation_id: int) -> None:
    try:
        get_conversation_for_user(user, conversation_id)
    except Http404:
        raise ChatError("not_found", "No such conversation.", "conversation_id") from None


def conversation_messages(user, conversation_id: int) -> list[dict]:
    """The stored messages of the user's conversation, as conversation.state lists them."""
    check_conversation(user, conversation_id)
    return list(
        Message.objects.filter(conversation_id=conversation_id).values(
            "id", "role", "status", "content", "seq"
        )
    )


def stored_messages(message_ids: list[int]) -> dict[int, dict]:
    rows = Message.objects.filter(pk__in=message_ids).values(
        "id", "role", "status", "content", "seq"
    )
    return {row["id"]: row for row in rows}


# --- conversation edits (the JSON API) ------------------------------------------------------


def rename_conversation(conversation: Conversation, title: str) -> None:
    # A rename is not activity: the conversation keeps its place in the list.
    Conversation.objects.filter(pk=conversation.pk).update(title=title)
    conversation.title = title


def delete_conversation(conversation: Conversation) -> list[int]:
    """Delete it with its messages; returns the answers that were streaming, to stop them."""
    with transaction.atomic():
        streaming = list(
            conversation.messages.filter(status=MessageStatus.STREAMING).values_list(
                "id", flat=True
            )
        )
        conversation.delete()
    return streaming
