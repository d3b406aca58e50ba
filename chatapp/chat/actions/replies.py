"""An answer's writes and broadcasts: admission, its rows, checkpoints, its end, interruption.

The sync functions run in a worker thread (`database_sync_to_async`) and return once their
transaction has committed; the async ones call them and only then `broadcast`, so a socket
never hears of a row it cannot read yet.
"""

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import import_module
from operator import attrgetter
from types import SimpleNamespace
from typing import Any, cast

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from chatapp.chat import events, fanout, json_output, planning, tooling
from chatapp.chat.actions import conversations
from chatapp.chat.errors import ChatError
from chatapp.chat.event_schema import ConversationEvent, CreatedMessage, SafetyFields
from chatapp.chat.groups import generation_group
from chatapp.chat.lookups import attachment_list, provider_page
from chatapp.chat.models import Conversation, Message, MessageRole, MessageStatus
from chatapp.chat.planning import ReplyPlan
from chatapp.chat.requests import RegenerateRequest, SendRequest
from chatapp.chat.screening import question_screening, safety_findings, safety_summary
from chatapp.core import processes
from chatapp.core.layers import channel_layer
from chatapp.core.locking import lock_rows, locked_if_there
from chatapp.core.text import storable
from chatapp.llm import StreamError, Usage, count_tokens_estimate, token_count
from chatapp.teams import actions as team_actions
from chatapp.teams import datafilter, providers, quota, reads, safety
from chatapp.teams.models import (
    MANAGER_ROLES,
    JsonSchema,
    Membership,
    SystemPrompt,
    Team,
    TeamPolicy,
)
from chatapp.teams.policy import RULES_RELATED, PolicyError
from chatapp.teams.safety import Finding, Screening
from chatapp.teams.services import current_team
from chatapp.uploads import actions as upload_actions
from chatapp.uploads.models import Upload
from chatapp.uploads.validation import UploadRefused

log = logging.getLogger(__name__)

INTERRUPTED_CODE = "interrupted"
INTERRUPTED_MESSAGE = "The server stopped while answering: regenerate to try again."
# How an answer ends with nothing to show when it ends before any text or tool call.
EMPTY_ENDS = (MessageStatus.ERROR, MessageStatus.STOPPED, MessageStatus.INTERRUPTED)
KEY_REFUSED_FOR_MEMBERS = "{server} refused the team's key; your team admins have been told."


# --- admission ---------------------------------------------------------------------------


def session_team(user: Any, session_key: str | None) -> Team:
    """The session's current team, read fresh so a team switch in another tab counts.

    A user in no team gets a personal team here (the one write).
    """
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    # With its policy and provider: planning reads them next (team_rules).
    return current_team(SimpleNamespace(user=user, session=store), RULES_RELATED)


def chosen_team(user: Any, team_id: int) -> Team:
    """The team a page asks a new conversation to start in: the one it shows, which is not
    the session's once another tab has switched team."""
    team = reads.team_with_rules(user, team_id)
    if team is None:
        raise ChatError(
            "not_found", "You are not in that team: reload the page to chat in yours.", "team_id"
        )
    return team


def admit_send(
    user: Any, session_key: str | None, request: SendRequest, request_id: str | None
) -> ReplyPlan:
    """Plan a chat.send; `start_reply` admits it (the caps) and writes its rows."""
    team = None
    if request.conversation_id is None and request.team_id is not None:
        team = chosen_team(user, request.team_id)
    elif request.conversation_id is None:
        team = session_team(user, session_key)
    plan = planning.plan_send(user, request, team=team, request_id=request_id)
    return with_tools(plan)


def admit_edit(
    user: Any,
    message_id: int,
    request: SendRequest,
    request_id: str | None,
    keeps_files: bool = False,
) -> ReplyPlan:
    return with_tools(planning.plan_edit(user, message_id, request, request_id, keeps_files))


def admit_regenerate(user: Any, request: RegenerateRequest, request_id: str | None) -> ReplyPlan:
    return with_tools(planning.plan_regenerate(user, request, request_id))


def admit(plan: ReplyPlan) -> None:
    """Check the team's monthly budgets, then count the request against its rate limit, last,
    once everything else passed. In the transaction that holds the answer's tokens, under the
    user's row lock (start_reply's, or admit_completion's)."""
    try:
        check_budget(plan.team, plan.user, plan.rules.policy)
        team_actions.admit_request(plan.user, plan.team, plan.rules.policy)
    except PolicyError as error:
        raise ChatError(error.code, error.message, error.field) from None


def check_budget(
    team: Team, user: Any, policy: TeamPolicy | None, spent: int = 0, own_hold: int = 0
) -> None:
    """The team's budget and the user's limit, with what answers still streaming may spend:
    answers that start together see each other, so together they cannot pass the budget by
    more than one answer could on its own. An answer going on after its tools ran counts what
    it `spent` as used, and its own reservation (`own_hold`) not as another answer's."""
    if policy is None or not has_budget(policy):
        return
    if policy.monthly_token_budget is not None:
        # The team's admissions queue here, each seeing the answers admitted before it (the
        # user's own queue on the user's row). NO KEY: new rows of the team do not wait.
        lock_rows(Team.objects.filter(pk=team.pk), no_key=True)
    others, own = planning.reserved_by_streaming(team.pk, user.pk)
    quota.check_budget(team, policy, user, (others - own_hold, own - own_hold), spent)


def admit_next_turn(answer_id: int, team: Team, user: Any, spent: Usage, reserve: int) -> None:
    """Before an answer's next model turn, once its tools have run: the team's budgets must
    still have room with what the answer has spent so far, as a new answer must at its start,
    so an answer that calls tools passes a budget by at most one turn. Its reservation then
    covers what it spent and what the next turn may (`reserve`). Raises ChatError
    (quota_exceeded); under the locks and in the order start_reply admits."""
    total = spent.prompt_tokens + spent.completion_tokens
    answer = Message.objects.filter(pk=answer_id, status=MessageStatus.STREAMING)
    with transaction.atomic():
        lock_rows(get_user_model().objects.filter(pk=user.pk))
        policy = TeamPolicy.objects.filter(team_id=team.pk).first()
        held = answer.values_list("reserved_tokens", flat=True).first() or 0
        try:
            check_budget(team, user, policy, total, held)
        except PolicyError as error:
            raise ChatError(error.code, error.message, error.field) from None
        answer.update(
            reserved_tokens=token_count(total + reserve),
            tool_turns_completion_tokens=spent.completion_tokens,
        )


def has_budget(policy: TeamPolicy) -> bool:
    return policy.monthly_token_budget is not None or policy.member_monthly_token_budget is not None


def admit_completion(
    plan: ReplyPlan, admitted: Callable[[ReplyPlan], None] | None = None
) -> ReplyPlan:
    """Admit an API answer as start_reply admits a chat.send. It has no streaming row, so
    what it may spend is held in a BudgetHold until `record_completion` counts its usage.
    `admitted` (the cap on answers at once) may still refuse it: a refusal counts nothing."""
    budget = has_budget(plan.rules.policy)
    hold = None
    with transaction.atomic():
        if budget:
            lock_rows(get_user_model().objects.filter(pk=plan.user.pk))
        admit(plan)
        if budget:
            # Past the longest an answer may run upstream, and the reaper's wait on top.
            lifetime = plan.client.config.total_timeout + settings.CHAT_STALE_GENERATION_SECONDS
            hold = team_actions.hold_tokens(plan.team, plan.user, plan.reserved_tokens, lifetime)
        if admitted is not None:
            admitted(plan)
    return replace(plan, budget_hold=hold)


def hold_for_title(team: Team, user: Any, tokens: int, lifetime: float) -> int | None:
    """Hold the tokens of a request for a conversation's title against the team's budgets, as
    an answer's are; returns the hold's id (None: the team has no budget). Raises PolicyError
    (quota_exceeded) when the budgets have no room left: no title is asked for then."""
    policy = TeamPolicy.objects.filter(team_id=team.pk).first()
    if policy is None or not has_budget(policy):
        return None
    with transaction.atomic():
        lock_rows(get_user_model().objects.filter(pk=user.pk))
        check_budget(team, user, policy)
        return team_actions.hold_tokens(team, user, tokens, lifetime)


def with_tools(plan: ReplyPlan) -> ReplyPlan:
    """The plan with the team's tools to offer, read in the same trip to the database thread:
    each trip waits behind everything queued there, and the upstream request waits for this."""
    try:
        tools = tooling.tools_for(plan.team.pk, plan.conversation.tools_enabled)
    except Exception:  # the tools are a help, never a reason the answer fails
        log.exception("Listing the tools of team %s failed", plan.team.pk)
        tools = []
    described = tooling.described_tokens([tool.spec() for tool in tools])
    return replace(plan, tools=tuple(tools), prompt_tokens=plan.prompt_tokens + described)


# --- the rows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """The rows start_reply wrote: the (maybe new) conversation and its new messages."""

    conversation_id: int
    title: str
    created: bool
    user_message: CreatedMessage | None
    assistant_message: CreatedMessage
    replaces: int | None = None

    @property
    def assistant_id(self) -> int:
        return self.assistant_message["id"]


def start_reply(plan: ReplyPlan, admitted: Callable[[ReplyPlan], None] | None = None) -> Exchange:
    """Admit the answer, then save the question (unless regenerating) and the answer to stream,
    on the plan's branch, and make that branch the one shown.

    Admission checks the user's answers streaming (none may stream in this conversation
    already: a send planned at the same moment in another process) and counts the request
    against the team's rate limit; `admitted` gets the plan with those answers
    (`streaming_ids`) before any row is written, and may still refuse it. A refusal writes
    nothing and counts nothing. Should the transaction not commit, the copies of files it
    stored for an edited question are deleted with it.
    """
    copied: list[Upload] = []  # files stored for the question, deleted should it roll back
    with upload_actions.discard_unless_committed(copied), transaction.atomic():
        # Sends racing on other sockets or processes queue here, so the cap holds for them too.
        lock_rows(get_user_model().objects.filter(pk=plan.user.pk))
        streaming = planning.check_concurrency(plan.user, plan.conversation.pk)
        plan = replace(plan, streaming_ids=streaming)
        admit(plan)
        _check_prompt_still_there(plan.conversation.system_prompt_id)
        _check_schema_still_there(plan)
        _check_still_there(plan.conversation)  # after the team's row, the order writes took
        _check_parent_still_there(plan.parent_id)
        if admitted is not None:
            admitted(plan)
        return _write_reply(plan, copied)


def _check_still_there(conversation: Conversation) -> None:
    """A conversation deleted since the plan read it (in another tab, by retention) takes no
    answer. Its row is held until the rows are written: a deletion starting meanwhile waits
    for them, and deletes them too."""
    if conversation.pk is None:
        return
    if not locked_if_there(Conversation.objects.filter(pk=conversation.pk), no_key=True):
        raise ChatError("not_found", "No such conversation.", "conversation_id")


def _check_prompt_still_there(prompt_id: int | None) -> None:
    """The team's prompt the plan read may have been deleted since, by an admin. Its row is
    held until the conversation names it: a deletion starting meanwhile waits (it takes the
    row first too, then the conversations naming it), and then finds this one."""
    if prompt_id is None:
        return
    if not locked_if_there(SystemPrompt.objects.filter(pk=prompt_id), no_key=True):
        raise ChatError(
            "not_found",
            "That system prompt was deleted meanwhile by your team's admins: send your message"
            " again, with another prompt if you like.",
            "system_prompt_id",
        )


def _check_schema_still_there(plan: ReplyPlan) -> None:
    """The team's JSON schema a send newly asks for may have been deleted since, as a prompt
    may (held the same way)."""
    conversation = plan.conversation
    written = conversation.pk is None or "json_schema" in plan.conversation_fields
    if not written or conversation.json_schema_id is None:
        return
    if not locked_if_there(JsonSchema.objects.filter(pk=conversation.json_schema_id), no_key=True):
        raise ChatError(
            "not_found",
            "That JSON schema was deleted meanwhile by your team's admins: pick another of"
            " the team's saved schemas and send again.",
            "response_format",
        )


def _check_parent_still_there(parent_id: int | None) -> None:
    """The message the question follows may have gone since the plan read it: an answer that
    ended before any text goes when it is retried, here in another tab, under the user's row
    lock this start now holds (so it cannot go before these rows are written)."""
    if parent_id is not None and not Message.objects.filter(pk=parent_id).exists():
        raise ChatError(
            "not_found",
            "The answer your message followed was retried meanwhile, in another tab or window:"
            " send your message again.",
        )


def _write_reply(plan: ReplyPlan, copied: list[Upload]) -> Exchange:
    conversation = plan.conversation
    created = conversation.pk is None
    if created:
        conversation.save()
    else:
        prompt_fields = ["system_prompt", "system_prompt_text", "system_prompt_locked"]
        conversation.save(update_fields=[*plan.conversation_fields, *prompt_fields, "updated_at"])
    parent_id = plan.parent_id
    replaces = plan.replaces.pk if plan.replaces is not None else None
    empty = plan.replaces
    if empty is not None and empty.status in EMPTY_ENDS and not empty.content:
        # A retry of an answer that failed, or was stopped or cut off, before any text or tool
        # call leaves no empty version, unless the conversation went on below it (deleting it
        # would delete those turns too) or its team is under legal hold (nothing is deleted).
        if not empty.tool_calls and not empty.children.exists() and not _held(conversation):
            empty.delete()
    user_message = None
    if plan.user_content is not None:
        user_message = _placed(
            Message(
                conversation=conversation,
                parent_id=parent_id,
                role=MessageRole.USER,
                content=plan.user_content,
                redactions=list(plan.redactions),
            )
        )
        uploads = _attach(plan, user_message, copied)
        parent_id = user_message.pk
    assistant = _placed(
        Message(
            conversation=conversation,
            parent_id=parent_id,
            role=MessageRole.ASSISTANT,
            status=MessageStatus.STREAMING,
            model=plan.params.model,
            heartbeat_at=timezone.now(),
            server_process=processes.token(),
            format=plan.requested_format,
            reserved_tokens=plan.reserved_tokens,
            # Until Llama Guard's verdict is recorded (`question_screened`), a process that
            # dies leaves the question unsent and out of later requests (`mark_interrupted`).
            error_code=(
                safety.UNCHECKED_QUESTION_CODE
                if safety.SafetyRules.of(plan.rules.policy).screens("input")
                else ""
            ),
        )
    )
    Conversation.objects.filter(pk=conversation.pk).update(active_leaf=assistant)
    conversation.active_leaf = assistant
    return Exchange(
        conversation_id=conversation.pk,
        title=conversation.title,
        created=created,
        user_message=(
            created_message(user_message, uploads, first=created) if user_message else None
        ),
        # An answer to the question just saved is that question's only child.
        assistant_message=created_message(assistant, first=user_message is not None),
        replaces=replaces,
    )


def _held(conversation: Conversation) -> bool:
    return Team.objects.held().filter(pk=conversation.team_id).exists()


def _placed(message: Message) -> Message:
    """Save a message at the place in the tree its parent_id names (null: a first message)."""
    message.explicit_parent = True
    message.save()
    return message


def _attach(plan: ReplyPlan, message: Message, copied: list[Upload]) -> list[Upload]:
    """The question's files: new uploads given to it, and copies of those an edited question
    carried (already another message's), each copy added to `copied` as its file is stored;
    in the order the question lists them."""
    if not plan.attachments:
        return []
    new = [upload for upload in plan.attachments if upload.message_id is None]
    kept = [upload for upload in plan.attachments if upload.message_id is not None]
    try:
        upload_actions.attach(new, message)
        copies = dict(zip(kept, upload_actions.copy_onto(kept, message, copied), strict=True))
    except UploadRefused as refused:  # deleted or sent from another tab since the plan
        raise ChatError(refused.code, refused.message, "attachments") from None
    return [copies.get(upload, upload) for upload in plan.attachments]


def created_message(
    message: Message, uploads: Iterable[Upload] = (), *, first: bool = False
) -> CreatedMessage:
    """The message.created payload; `first`: the message is its parent's only child (it was
    saved in the same transaction as its parent, or starts a new conversation)."""
    if first:
        sibling_ids = [message.pk]
    else:
        # parent_id None filters on IS NULL: the first messages are siblings too.
        siblings = Message.objects.filter(
            conversation_id=message.conversation_id, parent_id=message.parent_id
        )
        sibling_ids = list(siblings.order_by("id").values_list("id", flat=True))
    created: CreatedMessage = {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "parent_id": message.parent_id,
        "sibling_ids": sibling_ids,
        "role": message.role,  # type: ignore[typeddict-item]  # a MessageRole value
        "content": message.content,
        "status": message.status,  # type: ignore[typeddict-item]  # a MessageStatus value
    }
    if message.role == MessageRole.USER:
        created["attachments"] = attachment_list(uploads)
        created["redactions"] = message.redactions
    return created


async def announce_reply(exchange: Exchange, request_id: str | None) -> None:
    """Tell every tab on the conversation about the new messages, before any delta."""
    if exchange.user_message is not None:
        await broadcast(events.message_created(request_id, exchange.user_message))
    answer = events.message_created(request_id, exchange.assistant_message, exchange.replaces)
    await broadcast(answer)


@dataclass(frozen=True)
class Checkpoint:
    message_id: int
    content: str
    seq: int


def checkpoint_replies(checkpoints: list[Checkpoint]) -> None:
    """Save the text so far of streaming answers and prove their process is alive.

    One statement for all of them, run once per answer in one call (`executemany`: one
    prepared statement on SQLite, one pipelined round trip on PostgreSQL) and one transaction,
    so a process streaming hundreds of answers commits once a second, not once per answer: in
    autocommit each row of an `executemany` is a commit of its own, which kept the database
    thread three times as long (bench/README.md). Plain SQL: the ORM's version, an UPDATE with
    a CASE branch per answer, cost 30 ms of the server's CPU a second at 50 answers to build.
    Answers that ended meanwhile are left as their final write made them. Rows go in id order:
    another transaction updating several of them by id (the reaper's) locks them in that order
    too when it scans the primary key, so the two take the rows they share in one order.
    """
    if not checkpoints:
        return
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    in_id_order = sorted(checkpoints, key=attrgetter("message_id"))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {connection.ops.quote_name(Message._meta.db_table)}"
            ' SET "content" = %s, "seq" = %s, "heartbeat_at" = %s'
            ' WHERE "id" = %s AND "status" = %s',
            [
                (storable(c.content), c.seq, now, c.message_id, MessageStatus.STREAMING)
                for c in in_id_order
            ],
        )


def question_screened(message_id: int, verdict: Screening, team: Team, user: Any) -> None:
    """Llama Guard judged the answer's question: from here it may go upstream, unless it was
    blocked. Its verdict is recorded now, on the answer (`safety`) and, when it flagged the
    question, on the review queue (a blocked one stays out of later requests for its flag),
    so a process dying before the answer's end loses none of it; the end records it again,
    the question staying one flag on the queue (`flag_message`)."""
    with transaction.atomic():
        if Message.objects.filter(
            pk=message_id,
            status=MessageStatus.STREAMING,
            error_code=safety.UNCHECKED_QUESTION_CODE,
        ).update(error_code="", safety=safety_summary(verdict, None)):
            _flag(message_id, safety_findings(verdict, None), team, user)


def store_tool_calls(message_id: int, calls: list[dict[str, Any]]) -> None:
    """An answer's tool calls so far, while it streams (a reload shows them)."""
    Message.objects.filter(pk=message_id, status=MessageStatus.STREAMING).update(tool_calls=calls)


async def save_tool_calls(message_id: int, calls: list[dict[str, Any]]) -> None:
    await database_sync_to_async(store_tool_calls)(message_id, calls)


async def request_tool_decision(message_id: int, call_id: str, approve: bool) -> None:
    """Tell the generation of this answer, in whichever process, the user's decision."""
    await channel_layer().group_send(
        generation_group(message_id),
        {"type": "generation.tool_decision", "call_id": call_id, "approve": approve},
    )


# --- the end of an answer ------------------------------------------------------------------


@dataclass(frozen=True)
class ReplyResult:
    """How an answer ended, as the generation saw it."""

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
    safety: SafetyFields | None = None  # set when the team screens questions or answers
    findings: tuple[Finding, ...] = ()  # what Llama Guard flagged, for the review queue
    tool_calls: tuple[dict[str, Any], ...] = ()  # the calls the answer made, with results
    requested_format: dict[str, Any] | None = None  # the plan's, as start_reply stored it


@dataclass(frozen=True)
class AnswerFailure:
    """What the owner of a failed answer is told, in words they can act on."""

    code: str
    message: str
    retryable: bool
    help_url: str | None = None


def answer_failure(error: StreamError, team: Team, user: Any) -> AnswerFailure:
    """A refused key is the team admins' to fix: members are told so; owners and admins get
    the technical message, and owners the page where they change the key."""
    if error.code != "auth_failed":
        return AnswerFailure(error.code, error.message, error.retryable)
    managers = Membership.objects.filter(team=team, role__in=MANAGER_ROLES)
    if not managers.filter(user=user).exists():
        message = KEY_REFUSED_FOR_MEMBERS.format(server=providers.provider_name(team))
        return AnswerFailure(error.code, message, False)
    return AnswerFailure(error.code, error.message, False, provider_page(user, team.pk))


def save_reply(
    result: ReplyResult, team: Team, user: Any, policy: TeamPolicy | None = None
) -> tuple[AnswerFailure | None, dict[str, Any] | None]:
    """The final write of an answer, and its usage, in one transaction; returns what to say if
    it failed, and the outcome of the JSON check when the answer was asked for JSON.

    `policy` is the team's as the answer was planned (for the budget thresholds)."""
    error = answer_failure(result.error, team, user) if result.error else None
    checked = json_output.check_answer(result.requested_format, result.content, result.status)
    values = {
        "status": result.status,
        "content": storable(result.content),  # the model's NUL or half a surrogate pair
        "seq": result.seq,
        "model": result.model,
        "finish_reason": storable((result.finish_reason or "")[:32]),
        "prompt_tokens": result.usage.prompt_tokens if result.usage else None,
        "completion_tokens": result.usage.completion_tokens if result.usage else None,
        "time_to_first_token_ms": result.time_to_first_token_ms,
        "duration_ms": result.duration_ms,
        "upstream_request_id": storable((result.upstream_request_id or "")[:200]),
        "error_code": error.code[:40] if error else "",
        "error_message": storable(error.message[:500]) if error else "",  # upstream's details
        "heartbeat_at": timezone.now(),
        "updated_at": timezone.now(),
        "safety": result.safety,
        "tool_calls": list(result.tool_calls),
        "format": checked,
    }
    with transaction.atomic():
        answer = Message.objects.filter(pk=result.message_id)
        saved = answer.filter(status=MessageStatus.STREAMING).update(**values) == 1
        if not saved:  # reaped (or deleted) meanwhile
            _take_back_reaped(result.message_id)
            saved = answer.update(**values) == 1
        if saved and result.findings:
            _flag(result.message_id, result.findings, team, user)
        # An answer whose conversation was deleted while it streamed spent its tokens all the
        # same: they count while the team and the person are there to count them against.
        if result.usage and (saved or _still_there(team, user)):
            tokens = (result.usage.prompt_tokens, result.usage.completion_tokens)
            team_actions.record_usage(team, user, result.model, *tokens, policy=policy)
    return error, checked if saved else None


def _take_back_reaped(message_id: int) -> None:
    """An answer another process's reaper marked interrupted while this one still ran it (its
    heartbeat went stale) ends here all the same: its whole text is kept, its real status
    stands, and its real usage replaces the estimate the reaper counted (`_count_interrupted`).
    The reaper marks only streaming answers: once marked, the row is this process's alone."""
    reaped = (
        Message.objects.filter(
            pk=message_id,
            # Blocked: Llama Guard judged what the reaper kept (`screen_interrupted`).
            status__in=[MessageStatus.INTERRUPTED, MessageStatus.BLOCKED],
            completion_tokens__isnull=False,
        )
        .values(
            "prompt_tokens",
            "completion_tokens",
            "model",
            "updated_at",
            "conversation__team_id",
            "conversation__owner_id",
            "conversation__model",
        )
        .first()
    )
    if reaped is not None:
        team_actions.take_back_usage(
            reaped["conversation__team_id"],
            reaped["conversation__owner_id"],
            reaped["model"] or reaped["conversation__model"],
            reaped["updated_at"].date(),
            reaped["prompt_tokens"] or 0,
            reaped["completion_tokens"] or 0,
        )


def _still_there(team: Team, user: Any) -> bool:
    people = get_user_model().objects.filter(pk=user.pk)
    return Team.objects.filter(pk=team.pk).exists() and people.exists()


def _flag(answer_id: int, findings: Iterable[Finding], team: Team, user: Any) -> None:
    """Flag the answer's question (input) or the answer (output) for the team's reviewers."""
    question = (
        Message.objects.filter(children=answer_id, role=MessageRole.USER)
        .values_list("pk", flat=True)
        .first()
    )
    for finding in findings:
        message_id = question if finding.stage == "input" else answer_id
        if message_id is not None:
            team_actions.flag_message(team, user, message_id, finding)


async def finish_reply(
    result: ReplyResult, team: Team, user: Any, policy: TeamPolicy | None = None
) -> None:
    """Write the answer's end, then broadcast it (message.error and/or message.done)."""
    error, checked = await database_sync_to_async(save_reply)(result, team, user, policy)
    conversation_id, message_id = result.conversation_id, result.message_id
    if error is not None:
        await broadcast(
            events.message_error(
                conversation_id,
                message_id,
                error.code,
                error.message,
                retryable=error.retryable,
                help_url=error.help_url,
                categories=_blocked_categories(result, error),
            )
        )
    if result.status == MessageStatus.ERROR:
        return  # nothing was shown: the error frame is the whole story
    done = events.message_done(
        conversation_id,
        message_id,
        status=result.status,  # type: ignore[arg-type]  # a MessageStatus value
        model=result.model,
        finish_reason=result.finish_reason,
        usage=result.usage,
        safety=result.safety,
        answer_format=checked,
    )
    await broadcast(done)


def _blocked_categories(result: ReplyResult, error: AnswerFailure) -> list[str] | None:
    if error.code != "safety_blocked" or result.safety is None:
        return None
    return result.safety["categories"]


# --- answers through the OpenAI-compatible API ---------------------------------------------


def record_completion(plan: ReplyPlan, result: ReplyResult, api_key: Any, save: bool) -> int | None:
    """Count an API answer's tokens against the team, the person and the key; when `save`,
    keep it as a new conversation too. Returns the conversation's id, if saved.

    The images the conversation keeps are stored as files as their rows are written: when
    either transaction rolls back, their files are deleted too (no row would name them)."""
    conversation_id = None
    stored: list[Upload] = []  # the images' uploads, files written
    with upload_actions.discard_unless_committed(stored), transaction.atomic():
        if plan.budget_hold is not None:  # its usage takes its place, in this transaction
            team_actions.release_hold(plan.budget_hold)
        # A failure before any text is not kept, unless the team's reviewers are to see it.
        if save and (result.status != MessageStatus.ERROR or result.findings):
            try:
                # The answer was given: it counts, kept or not.
                with upload_actions.discard_unless_committed(stored), transaction.atomic():
                    conversation_id = _save_completion(plan, result, stored)
            except UploadRefused as refused:  # other files took the room while it was answered
                log.warning("An API exchange was not kept as a conversation: %s", refused.message)
            except Exception:
                log.exception("Keeping an API exchange as a conversation failed")
        if result.usage:
            team_actions.record_usage(
                plan.team,
                plan.user,
                result.model,
                result.usage.prompt_tokens,
                result.usage.completion_tokens,
                api_key=api_key,
                policy=plan.rules.policy,
            )
    return conversation_id


def _save_completion(plan: ReplyPlan, result: ReplyResult, stored: list[Upload]) -> int:
    """Keep the exchange as a new conversation; `stored` gathers the images' uploads, files
    written, for the caller to discard should the transaction roll back."""
    conversation = plan.conversation
    conversation.save()
    turns = [*plan.earlier_turns, (MessageRole.USER, plan.user_content or "")]
    # A refused request was judged whole (every turn the client wrote): none of its turns
    # may go upstream when the conversation goes on in the chat, where they are not screened.
    refused = result.error.code if result.error and result.status == MessageStatus.ERROR else ""
    refused = refused if refused in safety.REFUSED_QUESTION_CODES else ""
    rows = [
        Message(conversation=conversation, role=role, content=text, error_code=refused)
        for role, text in turns
    ]
    rows[-1].redactions = list(plan.redactions)  # what the question sent upstream instead
    usage = result.usage
    rows.append(
        Message(
            conversation=conversation,
            role=MessageRole.ASSISTANT,
            status=result.status,
            content=storable(result.content),
            model=result.model,
            finish_reason=storable((result.finish_reason or "")[:32]),
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            time_to_first_token_ms=result.time_to_first_token_ms,
            duration_ms=result.duration_ms,
            upstream_request_id=storable((result.upstream_request_id or "")[:200]),
            error_code=result.error.code[:40] if result.error else "",
            error_message=storable(result.error.message[:500]) if result.error else "",
            # Checked as a chat answer is, when it was asked for JSON.
            format=json_output.check_answer(plan.requested_format, result.content, result.status),
        )
    )
    rows[-1].safety = result.safety
    parent_id = None
    for row in rows:  # one straight branch, in order
        row.parent_id = parent_id
        parent_id = _placed(row).pk
    for row, images in zip(rows, plan.saved_images, strict=False):  # the turns, not the answer
        stored += upload_actions.store_images(plan.user, plan.team, list(images), row)
    conversation.active_leaf_id = parent_id
    conversation.save(update_fields=["active_leaf"])
    conversations.announce_created(conversation)
    if result.findings:
        saved = replace(result, message_id=rows[-1].pk, conversation_id=conversation.pk)
        _flag(saved.message_id, saved.findings, plan.team, plan.user)
    return conversation.pk


# --- answers nobody is writing any more ----------------------------------------------------


@dataclass(frozen=True)
class Abandoned:
    message_id: int
    conversation_id: int
    model: str
    usage: Usage | None = None  # what marking it counted
    unchecked: bool = False  # it ended before Llama Guard's verdict on its question
    status: str = MessageStatus.INTERRUPTED  # or blocked: its team's output screening withheld it
    # When its team screens questions (recorded by its process), or answers and it has text.
    safety: SafetyFields | None = None
    question: Screening | None = None  # Llama Guard's verdict on its question, as recorded
    # Its text awaits Llama Guard's verdict (`screen_interrupted`); the row is as this process
    # last wrote it while its `updated_at` is still this.
    screened_since: datetime | None = None


def stale_replies(cutoff: datetime, alive: list[int]) -> list[Abandoned]:
    """The streaming answers whose heartbeat is older than cutoff, but for those in `alive`
    (answers this very process is running)."""
    stale = Message.objects.filter(status=MessageStatus.STREAMING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    rows = stale.exclude(pk__in=alive).values_list("id", "conversation_id", "model")
    return [Abandoned(*row) for row in rows]


def replies_of_process(server_process: str) -> list[Abandoned]:
    """The streaming answers of the server process with this token (it has exited)."""
    if not server_process:
        return []
    rows = Message.objects.filter(status=MessageStatus.STREAMING, server_process=server_process)
    return [Abandoned(*row) for row in rows.values_list("id", "conversation_id", "model")]


def end_unstarted(message_id: int) -> list[Abandoned]:
    """Mark interrupted an answer whose rows were written but whose generation never started
    (its start was cancelled as the process stopped); returns it, if this call marked it."""
    rows = Message.objects.filter(pk=message_id, status=MessageStatus.STREAMING)
    found = [Abandoned(*row) for row in rows.values_list("id", "conversation_id", "model")]
    return mark_interrupted(found)


def mark_interrupted(found: list[Abandoned]) -> list[Abandoned]:
    """Mark the answers found interrupted; returns those this call marked.

    Each is its own conditional update, so when several processes reap at once every answer
    is marked, and announced, by exactly one of them.
    """
    marked = []
    for answer in found:
        with transaction.atomic():  # its hold gives way to what it used, in one transaction
            now = timezone.now()
            streaming = Message.objects.filter(pk=answer.message_id, status=MessageStatus.STREAMING)
            # Its question awaited Llama Guard's verdict, so was never sent: it stays out of
            # later requests (only the newest question is screened), as after a stop.
            if streaming.filter(error_code=safety.UNCHECKED_QUESTION_CODE).update(
                status=MessageStatus.INTERRUPTED,
                error_message=safety.UNCHECKED_QUESTION,
                updated_at=now,
            ):
                marked.append(replace(answer, unchecked=True))  # nothing went upstream
            elif streaming.update(
                status=MessageStatus.INTERRUPTED,
                error_code=INTERRUPTED_CODE,
                error_message=INTERRUPTED_MESSAGE,
                updated_at=now,
            ):
                usage = _count_interrupted(answer.message_id, now)
                marked.append(_awaiting_verdict(_as_screened(answer, usage), now))
    if marked:
        log.warning("Marked %d abandoned streaming answers interrupted", len(marked))
    return marked


def _count_interrupted(message_id: int, now: datetime) -> Usage | None:
    """What an answer whose process died had streamed counts, as a stopped answer's does: its
    text as checkpointed and the calls it made, at about four characters a token, and once it
    streamed either, its prompts (what it held, less the max tokens it held for the answer and
    the output of its turns that called tools, which that text and those calls count).
    The estimate is kept on the row, so a process that was only stalled and finishes the
    answer after all replaces it with the real figures (`_take_back_reaped`)."""
    message = (
        Message.objects.select_related("conversation__team", "conversation__owner")
        .filter(pk=message_id)
        .first()
    )
    if message is None or not (message.content or message.tool_calls):
        return None
    conversation = message.conversation
    held_for_output = (conversation.max_tokens or 0) + message.tool_turns_completion_tokens
    prompt = max(0, message.reserved_tokens - held_for_output)
    calls = "".join(
        f"{call.get('name', '')}{call.get('arguments', '')}" for call in message.tool_calls
    )
    completion = count_tokens_estimate(message.content + calls)
    Message.objects.filter(pk=message_id).update(prompt_tokens=prompt, completion_tokens=completion)
    team_actions.record_usage(
        conversation.team,
        conversation.owner,
        message.model or conversation.model,
        prompt,
        completion,
        day=now.date(),
    )
    return Usage(prompt, completion)


def _as_screened(answer: Abandoned, usage: Usage | None) -> Abandoned:
    """The marked answer with what its process recorded of its question's verdict."""
    summary = Message.objects.filter(pk=answer.message_id).values_list("safety", flat=True)[0]
    return replace(answer, usage=usage, safety=summary, question=question_screening(summary))


def _awaiting_verdict(answer: Abandoned, marked_at: datetime) -> Abandoned:
    """An answer of a team that screens answers, with text: what it streamed since its last
    check mid-answer was never screened, nor was the whole at its end. Until Llama Guard's
    verdict on the whole (`screen_interrupted`) it stands, from this very transaction, as an
    answer Llama Guard could not judge: shown and said so, or withheld when the team fails
    closed. A verdict that never comes (the process marking it died, Llama Guard did not
    answer in time) leaves it as the team's policy says."""
    with_text = Message.objects.filter(pk=answer.message_id).exclude(content="")
    policy = TeamPolicy.objects.filter(team__conversations__messages__in=with_text).first()
    if policy is None:
        return answer
    rules = safety.SafetyRules.of(policy)
    if not rules.screens("output"):
        return answer
    unscreened = safety.Screening(unscreened=True, blocked=rules.fail_closed)
    return _record_verdict(answer, unscreened, marked_at) or answer


def _record_verdict(answer: Abandoned, verdict: Screening, since: datetime) -> Abandoned | None:
    """Write Llama Guard's verdict on an interrupted answer as the end of an answer records
    it: its `safety` (beside its question's verdict), blocked (withheld, no error) when the
    verdict blocks, and what it flagged on the review queue (its question's flag is there
    already). None when the row changed `since` this process wrote it: the process that was
    streaming it was only stalled and ended it after all, or it was deleted."""
    now = timezone.now()
    status = MessageStatus.BLOCKED if verdict.blocked else MessageStatus.INTERRUPTED
    summary = safety_summary(answer.question, verdict)
    with transaction.atomic():
        row = Message.objects.filter(pk=answer.message_id, updated_at=since)
        if not row.update(
            status=status,
            error_code="" if verdict.blocked else INTERRUPTED_CODE,
            error_message="" if verdict.blocked else INTERRUPTED_MESSAGE,
            safety=summary,
            updated_at=now,
        ):
            return None
        findings = safety_findings(None, verdict)
        if findings:
            conversation = Conversation.objects.select_related("team", "owner").get(
                pk=answer.conversation_id
            )
            _flag(answer.message_id, findings, conversation.team, conversation.owner)
    return replace(answer, status=status, safety=summary, screened_since=now)


@dataclass(frozen=True)
class _Screening:
    """What Llama Guard judges of an interrupted answer, and under which rules."""

    client: Any
    messages: list[dict[str, Any]]
    rules: safety.SafetyRules


def _to_screen(answer: Abandoned) -> _Screening | None:
    """The answer's question (its words, as the team's data filter sends them upstream) and
    its text as saved; None when that cannot be had (the filter now refuses the question, the
    team's provider settings are unusable): Llama Guard gives no verdict then."""
    message = (
        Message.objects.select_related("conversation__team", "parent")
        .filter(pk=answer.message_id)
        .first()
    )
    if message is None:
        return None
    team = message.conversation.team
    policy = TeamPolicy.objects.filter(team=team).first()
    if policy is None:
        return None
    question = {"role": "user", "content": message.parent.content if message.parent else ""}
    try:
        filtered = datafilter.apply([question], datafilter.DataRules.of(policy))
        client = providers.llama_client(team)
    except (datafilter.UnusablePattern, PolicyError):
        return None
    if filtered.blocked:
        return None
    answered = {"role": "assistant", "content": message.content}
    return _Screening(client, [*filtered.messages, answered], safety.SafetyRules.of(policy))


async def _verdict(answer: Abandoned) -> Screening | None:
    """Llama Guard's verdict on the whole of an interrupted answer, as at an answer's end
    (failures as the team's policy says); None when it cannot be asked."""
    try:
        job = await database_sync_to_async(_to_screen)(answer)
        if job is None:
            return None
        verdict = await safety.screen(job.client, job.messages, job.rules, "output")
        safety.count("output", verdict, job.rules)
        return verdict
    except Exception:
        log.exception("Screening interrupted answer %s failed", answer.message_id)
        return None


def _record_verdicts(
    awaiting: list[Abandoned], verdicts: dict[int, Screening]
) -> dict[int, Abandoned | None]:
    return {
        answer.message_id: _record_verdict(answer, verdicts[answer.message_id], since)
        for answer in awaiting
        if answer.message_id in verdicts and (since := answer.screened_since) is not None
    }


async def screen_interrupted(marked: list[Abandoned], seconds: float) -> list[Abandoned]:
    """Llama Guard's verdicts on the answers `mark_interrupted` marked awaiting one, asked
    together and recorded as an answer's end records its verdict; `seconds` in all, then
    those without one stand as marked (unscreened). Returns the answers to announce, as they
    now stand: less those whose process ended them after all meanwhile (it announces them)."""
    awaiting = [answer for answer in marked if answer.screened_since is not None]
    if not awaiting:
        return marked
    asking = {asyncio.ensure_future(_verdict(answer)): answer for answer in awaiting}
    done, late = await asyncio.wait(asking, timeout=seconds)
    for task in late:
        task.cancel()
    if late:
        log.warning("Llama Guard judged %d interrupted answers too late", len(late))
    verdicts = {
        asking[task].message_id: verdict for task in done if (verdict := task.result()) is not None
    }
    recorded = await database_sync_to_async(_record_verdicts)(awaiting, verdicts)
    now_standing = [recorded.get(answer.message_id, answer) for answer in marked]
    return [answer for answer in now_standing if answer is not None]


async def announce_interrupted(abandoned: list[Abandoned]) -> None:
    """Tell the tabs watching those conversations that the answers ended (call it with the
    answers `mark_interrupted` marked, so each is announced once)."""
    for answer in abandoned:
        ids = (answer.conversation_id, answer.message_id)
        code, message = (
            (safety.UNCHECKED_QUESTION_CODE, safety.UNCHECKED_QUESTION)
            if answer.unchecked
            else (INTERRUPTED_CODE, INTERRUPTED_MESSAGE)
        )
        if answer.status != MessageStatus.BLOCKED:  # blocked: the notice says it all
            await broadcast(events.message_error(*ids, code, message, retryable=True))
        done = events.message_done(
            *ids,
            status=answer.status,  # type: ignore[arg-type]  # a MessageStatus value
            model=answer.model,
            usage=answer.usage,
            safety=answer.safety,
        )
        await broadcast(done)


# --- sending -------------------------------------------------------------------------------


async def broadcast(
    event: ConversationEvent, *, quiet: bool = False, followers: fanout.Followers | None = None
) -> bool:
    """Send an event to its conversation's sockets; the database stays the source of truth.

    Call it once the write the event reports has committed. This process's sockets get it
    directly (`fanout`); a channel layer that is down loses it for other processes' (logged
    unless quiet) and returns False: sockets that resubscribe get the stored state.
    `followers`: this loop's `fanout.followers()`, when the caller holds it.
    """
    delivered = await fanout.publish(cast(dict[str, Any], event), followers)
    if not delivered and not quiet:
        conversation_id = event["conversation_id"]
        log.warning("Could not broadcast %s to conversation %s", event["type"], conversation_id)
    return delivered


LEFT_TEAM = "left_team"  # a stop's reason: its owner is no longer in the conversation's team


async def request_stop(message_id: int, reason: str = "") -> None:
    """Stop the answer wherever it runs; with no reason it ends as the user's own stop."""
    event = {"type": "generation.stop", "message_id": message_id, "reason": reason}
    await channel_layer().group_send(generation_group(message_id), event)


def stop_deleted_answers(message_ids: list[int]) -> None:
    """Stop the answers that were streaming in a conversation just deleted, wherever they run."""
    for message_id in message_ids:
        try:
            async_to_sync(request_stop)(message_id)
        except Exception:  # channel layer down: the answer ends on its own, unsaved
            log.warning("Could not stop answer %s of a deleted conversation", message_id)


def reason_to_stop(message_id: int) -> str | None:
    """Why an answer that has just joined its group must stop after all, or None.

    A stop sent between the commit of its rows and its joining reached no one. What stops an
    answer other than its user (who learns its id only once it has joined) is in the database:
    its conversation deleted (with its team, or its owner), its owner deactivated, or its
    owner out of the team. Plain SQL, as every answer runs it on the database thread: the
    ORM's version took 0.7 ms to build and run, this one 0.1 ms (bench/README.md).
    """
    table = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT u.is_active, EXISTS (SELECT 1 FROM {table(Membership._meta.db_table)} AS mb"
            " WHERE mb.team_id = c.team_id AND mb.user_id = c.owner_id)"
            f" FROM {table(Message._meta.db_table)} AS m"
            f" JOIN {table(Conversation._meta.db_table)} AS c ON c.id = m.conversation_id"
            f" JOIN {table(get_user_model()._meta.db_table)} AS u ON u.id = c.owner_id"
            " WHERE m.id = %s",
            [message_id],
        )
        row = cursor.fetchone()
    if row is None or not row[0]:
        return ""  # as the stop of a deletion or a deactivation
    return None if row[1] else LEFT_TEAM


async def request_snapshot(message_id: int, reply_channel: str) -> None:
    await channel_layer().group_send(
        generation_group(message_id),
        {
            "type": "generation.snapshot_request",
            "message_id": message_id,
            "reply_channel": reply_channel,
        },
    )
