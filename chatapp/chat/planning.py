"""Planning a reply: everything needed to ask the model for an answer, worked out by reads only.

The writes that follow (admission against the team's budgets and rate limit, the rows) are in
`chatapp.chat.actions.replies`.
"""

from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Exists, OuterRef, Q, Sum

from chatapp.accounts import preferences
from chatapp.chat import json_output, tooling, tree
from chatapp.chat.errors import ChatError
from chatapp.chat.history import History, build_history, context_budget, title_from
from chatapp.chat.lookups import owned_conversation, owned_message
from chatapp.chat.models import (
    Conversation,
    Message,
    MessageRole,
    MessageStatus,
    related_or_none,
)
from chatapp.chat.requests import CompletionRequest, RegenerateRequest, SendRequest
from chatapp.core.words import counted
from chatapp.llm import ChatParams, LlamaClient
from chatapp.teams import datafilter, policy, providers, reads, safety
from chatapp.teams.models import Membership, SafetyFlag, SystemPrompt, Team
from chatapp.uploads import context as attachments
from chatapp.uploads.actions import check_room
from chatapp.uploads.models import Upload
from chatapp.uploads.validation import CheckedFile, UploadRefused


@dataclass(frozen=True)
class ReplyPlan:
    """What to send upstream and what to write, decided before any write."""

    user: Any
    team: Team
    conversation: Conversation  # unsaved for a new conversation; changed fields not yet saved
    messages: list[dict[str, Any]]
    prompt_tokens: int  # the messages' estimated size, before the data filter's placeholders
    params: ChatParams
    client: LlamaClient
    rules: policy.TeamRules
    request_id: str | None = None
    user_content: str | None = None  # the question to save; None for a regenerate
    replaces: Message | None = None  # the answer a regenerate puts another one beside
    # The message the new question (or, for a regenerate, the new answer) follows.
    parent_id: int | None = None
    conversation_fields: tuple[str, ...] = ()  # the settings that changed
    streaming_ids: tuple[int, ...] = ()  # the user's answers streaming when this was planned
    attachments: tuple[Upload, ...] = ()  # the uploads the question carries
    redactions: tuple[dict[str, str], ...] = ()  # what the data filter replaced in the question
    # (role, text) before the question, for an API answer saved as a new conversation, and
    # the images each of them and the question carried inline
    earlier_turns: tuple[tuple[str, str], ...] = ()
    saved_images: tuple[tuple[CheckedFile, ...], ...] = ()
    answer_format: json_output.AnswerFormat | None = None  # JSON output asked for; None: text
    tools: tuple[tooling.OfferedTool, ...] = ()  # the team's tools offered, listed at admission
    # An API client's own functions, offered upstream as sent; the client runs them.
    client_tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    budget_hold: int | None = None  # an API answer's BudgetHold, released with its usage
    # The system prompt is the member's own text, not one of the team's prompts: Llama Guard
    # judges it with the question, as it does a /v1 client's system message.
    own_prompt: bool = False
    # Another answer to the first question (regenerated, or to an edit of it) while the model
    # has not named the conversation: its earlier answers were cut short, failed or stopped.
    names_conversation: bool = False

    @property
    def reserved_tokens(self) -> int:
        """What the answer may spend, held against the team's budgets while it streams."""
        return self.prompt_tokens + (self.params.max_tokens or 0)

    @property
    def requested_format(self) -> dict[str, Any] | None:
        """The format the answer's row keeps, to be checked against when it ends."""
        return self.answer_format.requested() if self.answer_format else None


@dataclass(frozen=True)
class Turn:
    """A stored or new message of the conversation, before it becomes an upstream message."""

    role: str
    content: str
    uploads: tuple[Upload, ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()  # an answer's calls, with their results
    images: tuple[CheckedFile, ...] = ()  # images an API client sent inline, cleaned
    message_id: int | None = None  # a stored message's


def plan_send(
    user: Any, request: SendRequest, *, team: Team | None, request_id: str | None = None
) -> ReplyPlan:
    """Plan a chat.send; `team` is where a new conversation starts (the session's team)."""
    if request.conversation_id is None:
        if team is None:
            raise ValueError("A new conversation needs a team.")
        conversation = _new_conversation(user, team, request)
        turns: list[Turn] = []
        path: tuple[int, ...] = ()
    else:
        conversation = _conversation_for_reply(user, request.conversation_id)
        _change_prompt(conversation, request)
        path = tree.conversation_branch(conversation.pk, conversation.active_leaf_id).path
        turns = _turns(conversation, path)
    parent_id = path[-1] if path else None
    return _plan_question(user, conversation, turns, request, request_id, parent_id)


def plan_edit(
    user: Any,
    message_id: int,
    request: SendRequest,
    request_id: str | None = None,
    keeps_files: bool = False,
) -> ReplyPlan:
    """Plan a chat.edit: a new version of a question, beside it, and an answer to it. Its
    `attachments` may name the question's own files, which it keeps (copied onto the new
    version); with `keeps_files` (`attachments` left out or null) it keeps them all."""
    edited = owned_message(user, message_id)
    if edited.role != MessageRole.USER:
        raise ChatError("invalid_frame", "Only a question can be edited.", "message_id")
    conversation = _conversation_for_reply(user, edited.conversation_id)
    path = tree.conversation_branch(conversation.pk, edited.parent_id).up_to(edited.parent_id)
    turns = _turns(conversation, path)
    carried = tuple(Upload.objects.filter(message=edited).order_by("id"))
    if keeps_files and carried:
        request = replace(request, attachments=tuple(upload.pk for upload in carried))
    if not request.content.strip() and not request.attachments:  # no words, and no files kept
        raise ChatError("empty_content", "Write a message first.", "content")
    plan = _plan_question(user, conversation, turns, request, request_id, edited.parent_id, carried)
    if edited.parent_id is None and _unnamed(conversation):
        plan = replace(plan, names_conversation=True)
    return plan


def _plan_question(
    user: Any,
    conversation: Conversation,
    turns: list[Turn],
    request: SendRequest,
    request_id: str | None,
    parent_id: int | None,
    carried: tuple[Upload, ...] = (),
) -> ReplyPlan:
    rules = policy.team_rules(conversation.team)  # read once for settings, provider and quota
    fields = _apply_choices(user, conversation, request, rules)
    uploads = _uploads_to_send(user, request, conversation, carried)
    turns.append(Turn(MessageRole.USER, request.content, uploads))
    return _plan(
        user,
        conversation,
        turns,
        rules,
        request_id=request_id,
        user_content=request.content,
        conversation_fields=fields,
        attachments=uploads,
        parent_id=parent_id,
        answer_format=json_output.conversation_format(conversation),
    )


def plan_completion(
    user: Any, team: Team, request: CompletionRequest, save: bool = False
) -> ReplyPlan:
    """Plan an answer for the OpenAI-compatible API: a new, unsaved conversation in `team`
    holding the client's turns, under the same rules as a chat.send that starts one (`save`:
    the exchange is to be kept as a conversation when the answer ends)."""
    if not Membership.objects.filter(team=team, user=user).exists():
        raise ChatError("forbidden", "You are not a member of this team.")
    question = request.turns[request.question].content
    send = SendRequest(content=question, system_prompt_text=request.system_prompt_text)
    conversation = _new_conversation(user, team, send)
    rules = policy.team_rules(team)
    fields = _apply_settings(user, conversation, request.settings, rules)
    images = _inline_images(request, conversation.model, team, save)
    answer_format = request.answer_format
    if not request.format_given and request.system_prompt_text is None:
        # The team's prompt is sent: it asks for its format, as a chat started from it does.
        answer_format = json_output.conversation_format(conversation)
    turns = [
        Turn(
            t.role,
            t.content,
            tool_calls=tooling.client_calls(t.content, t.tool_calls),
            images=turn_images,
        )
        for t, turn_images in zip(request.turns, images, strict=True)
    ]
    plan = _plan(
        user,
        conversation,
        turns,
        rules,
        user_content=question,
        conversation_fields=fields,
        earlier_turns=tuple((t.role, t.content) for t in request.turns[: request.question]),
        saved_images=tuple(images[: request.question + 1]),
        answer_format=answer_format,
        streaming_ids=check_concurrency(user),  # a chat.send checks them as it writes its rows
        client_tools=request.tools,
        tool_choice=request.tool_choice,
        # The client wrote every turn and expects the model to read them all, as OpenAI's
        # API does: too many to fit is refused, not trimmed behind its back.
        every_turn=True,
    )
    if not request.tools:
        return plan
    described = tooling.described_tokens(request.tools)
    return replace(plan, prompt_tokens=plan.prompt_tokens + described)


def _inline_images(
    request: CompletionRequest, model: str, team: Team, save: bool
) -> list[tuple[CheckedFile, ...]]:
    """Each turn's images, cleaned (refused with the parameter at fault); an exchange to be
    saved keeps them as attachments, so they must fit in the team's storage."""
    try:
        attachments.check_inline_images(request.images, model)
    except UploadRefused as refused:
        field = "model" if refused.code == "model_cannot_see_images" else "messages"
        raise ChatError(refused.code, refused.message, field) from None
    per_turn = []
    for turn in request.turns:
        cleaned = []
        for where, data in turn.images:
            try:
                cleaned.append(attachments.inline_image(where, data))
            except UploadRefused as refused:
                raise ChatError(refused.code, refused.message, where) from None
        per_turn.append(tuple(cleaned))
    if save:
        try:
            check_room(team, sum(len(image.data) for images in per_turn for image in images))
        except UploadRefused as refused:
            raise ChatError(refused.code, refused.message, "messages") from None
    return per_turn


def plan_regenerate(
    user: Any, request: RegenerateRequest, request_id: str | None = None
) -> ReplyPlan:
    """Plan another answer to the question this answer follows; the answer stays beside it."""
    message = owned_message(user, request.message_id)
    if message.role != MessageRole.ASSISTANT:
        raise ChatError("invalid_frame", "Only an answer can be regenerated.", "message_id")
    conversation = _conversation_for_reply(user, message.conversation_id)
    path = tree.conversation_branch(conversation.pk, message.parent_id).up_to(message.parent_id)
    turns = _turns(conversation, path)
    # The question itself goes last: not one before it, when the safety policy keeps it back.
    if not turns or turns[-1].role != MessageRole.USER or turns[-1].message_id != message.parent_id:
        raise ChatError("invalid_frame", "There is no question to answer again.", "message_id")
    rules = policy.team_rules(conversation.team)
    fields = _apply_choices(user, conversation, request, rules)
    images = [upload for upload in turns[-1].uploads if upload.is_image]
    if images and not attachments.sees_images(conversation.model):  # the question is about them
        raise ChatError(
            "model_cannot_see_images",
            f"{conversation.model} does not understand images: regenerate with a model that"
            " does (Llama 4).",
            "settings",
        )
    return _plan(
        user,
        conversation,
        turns,
        rules,
        request_id=request_id,
        replaces=message,
        conversation_fields=fields,
        parent_id=message.parent_id,
        answer_format=json_output.conversation_format(conversation),
        names_conversation=len(path) == 1 and _unnamed(conversation),
    )


def _unnamed(conversation: Conversation) -> bool:
    """Whether the title is still the first words of the first question (or of its first
    file's name), as the conversation started: neither the model nor the user named it."""
    first = (
        conversation.messages.filter(parent__isnull=True, role=MessageRole.USER)
        .order_by("id")
        .first()
    )
    if first is None:
        return False
    if first.content.strip():
        return conversation.title == title_from(first.content)
    name = Upload.objects.filter(message=first).order_by("id").values_list("name", flat=True)
    return conversation.title == title_from(name.first() or "")


def check_concurrency(user: Any, conversation_id: int | None = None) -> tuple[int, ...]:
    """The user's streaming answers; refused when they are already the most that may stream,
    or when one streams in `conversation_id` (a send planned at the same moment elsewhere)."""
    # Plain SQL: it runs as every answer is admitted, and building the ORM's join cost
    # several times running it (bench/README.md).
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.id, m.conversation_id FROM {Message._meta.db_table} m"
            f" INNER JOIN {Conversation._meta.db_table} c ON c.id = m.conversation_id"
            " WHERE c.owner_id = %s AND m.role = %s AND m.status = %s",
            [user.pk, MessageRole.ASSISTANT.value, MessageStatus.STREAMING.value],
        )
        rows = cursor.fetchall()
    if conversation_id is not None and any(row[1] == conversation_id for row in rows):
        raise conversation_busy()
    if len(rows) >= settings.CHAT_MAX_CONCURRENT_GENERATIONS:
        raise concurrency_refusal(len(rows))
    return tuple(row[0] for row in rows)


def reserved_by_streaming(team_id: int, user_id: int) -> tuple[int, int]:
    """What the team's answers streaming on the chat page may still spend: all of them, and
    the user's."""
    totals = Message.objects.filter(
        conversation__team_id=team_id, status=MessageStatus.STREAMING
    ).aggregate(
        team=Sum("reserved_tokens"),
        own=Sum("reserved_tokens", filter=Q(conversation__owner_id=user_id)),
    )
    return totals["team"] or 0, totals["own"] or 0


def conversation_busy() -> ChatError:
    return ChatError(
        "conversation_busy", "An answer is still streaming here: wait for it or stop it."
    )


def concurrency_refusal(streaming: int) -> ChatError:
    cap = settings.CHAT_MAX_CONCURRENT_GENERATIONS
    return ChatError(
        "rate_limited",
        f"You already have {counted(streaming, 'answer')} streaming (the limit is {cap}):"
        " wait for one to finish or stop it.",
    )


def _plan(
    user: Any,
    conversation: Conversation,
    turns: list[Turn],
    rules: policy.TeamRules,
    **details: Any,
) -> ReplyPlan:
    team = conversation.team
    answer_format = details.get("answer_format")
    params = ChatParams(
        model=conversation.model,
        temperature=conversation.temperature,
        top_p=conversation.top_p,
        max_tokens=conversation.max_tokens,
        response_format=answer_format.upstream() if answer_format else None,
    )
    history = build_history(
        conversation.system_prompt_text,
        _upstream(turns, params.model),
        params.model,
        params.max_tokens,
    )
    _check_documents_fit(history, turns[-1], params)
    every_turn = details.pop("every_turn", False)  # not the plan's: whether turns may go
    budget = context_budget(params.model, params.max_tokens)
    if every_turn and (history.dropped or history.tokens > budget):
        raise ChatError(
            "context_too_long",
            "The messages are too long for the model's context window: "
            f"{params.model} reads about {budget:,} tokens with room for its answer. Send fewer"
            " or shorter messages, or a lower max_tokens.",
            "content",
        )
    _check_question_fits(history, params)
    messages, redactions = _filter_data(history.messages, rules, conversation)
    try:
        client = providers.llama_client(team, rules)
    except policy.PolicyError as error:
        raise ChatError(error.code, error.message, error.field) from None
    return ReplyPlan(
        user,
        team,
        conversation,
        messages,
        history.tokens,
        params,
        client,
        rules,
        redactions=redactions,
        own_prompt=_own_prompt(conversation, rules),
        **details,
    )


def _own_prompt(conversation: Conversation, rules: policy.TeamRules) -> bool:
    """Whether the system prompt sent is the member's own text (read only when screening)."""
    if not safety.SafetyRules.of(rules.policy).screens("input"):
        return False
    return _prompt_is_own(conversation)


def _prompt_is_own(conversation: Conversation) -> bool:
    """Whether the system prompt sent is the member's own text, not one of the team's."""
    text = conversation.system_prompt_text
    if not text.strip():
        return False
    prompt = conversation.system_prompt
    return prompt is None or text != prompt.content


def _filter_data(
    messages: list[dict[str, Any]], rules: policy.TeamRules, conversation: Conversation
) -> tuple[list[dict[str, Any]], tuple[dict[str, str], ...]]:
    """The team's data filter over every question sent, and the member's own system prompt:
    refuse, or replace with placeholders."""
    try:
        data_rules = datafilter.DataRules.of(rules.policy)
    except datafilter.UnusablePattern as unusable:
        raise ChatError(
            "data_blocked",
            f"Your team's data policy has a pattern ({unusable.name}) that can no longer be"
            " used: nothing was sent. Ask a team admin to correct it.",
            "content",
        ) from None
    own_prompt = data_rules.active and _prompt_is_own(conversation)  # reads only if needed
    filtered = datafilter.apply(messages, data_rules, own_system=own_prompt)
    if filtered.blocked:
        found = " and ".join(filtered.blocked)
        raise ChatError(
            "data_blocked",
            f"Your team's data policy blocks questions holding {found}: nothing was sent."
            " Remove it and send again.",
            "content",
        )
    redactions = tuple(
        {"placeholder": r.placeholder, "label": r.label} for r in filtered.redactions
    )
    return filtered.messages, redactions


def _new_conversation(user: Any, team: Team, request: SendRequest) -> Conversation:
    prompt = _prompt_for(team, request.system_prompt_id)
    conversation = Conversation(
        team=team, owner=user, title=title_from(request.content), temporary=request.temporary
    )
    conversation.system_prompt = prompt
    conversation.system_prompt_text = prompt.content if prompt else ""
    conversation.system_prompt_locked = bool(prompt and prompt.locked)
    if request.system_prompt_text is not None:
        _refuse_if_locked(conversation)
        conversation.system_prompt_text = request.system_prompt_text
    return conversation


def _prompt_for(team: Team, prompt_id: int | None) -> SystemPrompt | None:
    """The team's prompt `prompt_id`, or its default one (None if it has none)."""
    if prompt_id is None:
        # `Model.raw`: most new conversations start here, and building the ORM's query cost
        # about four times running it (bench/README.md).
        default = SystemPrompt.objects.raw(
            f"SELECT * FROM {SystemPrompt._meta.db_table} WHERE team_id = %s AND is_default = %s"
            " ORDER BY position, id LIMIT 1",
            [team.pk, True],
        )
        return next(iter(default), None)
    prompt = SystemPrompt.objects.for_team(team).filter(pk=prompt_id).first()
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
        assert prompt is not None  # _prompt_for raises for an id it cannot find
        conversation.system_prompt = prompt
        conversation.system_prompt_text = prompt.content
        conversation.system_prompt_locked = prompt.locked
    if request.system_prompt_text is not None:
        conversation.system_prompt_text = request.system_prompt_text


def _refuse_if_locked(conversation: Conversation) -> None:
    if prompt_locked(conversation):
        raise ChatError(
            "prompt_locked",
            "This conversation's system prompt is locked by your team's admins.",
            "system_prompt",
        )


def prompt_locked(conversation: Conversation) -> bool:
    """Whether members may not change the conversation's system message: it started from a
    locked prompt, or from a prompt an admin has locked since."""
    if conversation.system_prompt_locked:
        return True
    prompt = related_or_none(conversation, "system_prompt")
    return prompt is not None and prompt.locked


def _conversation_for_reply(user: Any, conversation_id: int) -> Conversation:
    conversation = owned_conversation(user, conversation_id)
    # Its team, with the policy and provider the plan reads next (team_rules), in one plain
    # statement that also says whether the user is still in the team (`teams.reads`).
    team = reads.team_with_rules(user, conversation.team_id)
    if team is None:
        raise ChatError(
            "forbidden", "You are no longer in this conversation's team: start a new one."
        )
    conversation.team = team
    if conversation.messages.filter(status=MessageStatus.STREAMING).exists():
        raise conversation_busy()
    return conversation


def _turns(conversation: Conversation, path: tuple[int, ...]) -> list[Turn]:
    """The branch `path` with its files; failed or empty answers are left out."""
    if not path:
        return []
    rows = conversation.messages.filter(
        pk__in=path, role__in=[MessageRole.USER, MessageRole.ASSISTANT]
    )
    rows = rows.exclude(status__in=[MessageStatus.ERROR, MessageStatus.BLOCKED]).exclude(
        role=MessageRole.ASSISTANT, content="", tool_calls=[]
    )
    # Questions the safety policy blocked never go upstream, later turns included; nor do
    # those refused unscreened (failing closed): only the newest question is screened. The
    # refused answer below one tells it too, where no flag is (a copy of a shared snapshot).
    # An API request refused and saved keeps its refusal on every turn: it was judged whole.
    # The flags are looked up by the branch's messages: NOT IN would read every blocked
    # question of the site at each send.
    rows = (
        rows.exclude(
            Exists(SafetyFlag.objects.filter(message=OuterRef("pk"), blocked=True, stage="input"))
        )
        .exclude(
            pk__in=conversation.messages.filter(
                pk__in=path, error_code__in=safety.REFUSED_QUESTION_CODES
            ).values("parent_id")
        )
        .exclude(error_code__in=safety.REFUSED_QUESTION_CODES)
    )
    files = Upload.objects.filter(message__in=path).by_message()
    return [
        Turn(
            role,
            content,
            tuple(files.get(message_id, ())),
            tuple(calls or ()),
            message_id=message_id,
        )
        for message_id, role, content, calls in rows.values_list(
            "id", "role", "content", "tool_calls"
        )
    ]


def _uploads_to_send(
    user: Any, request: SendRequest, conversation: Conversation, carried: tuple[Upload, ...]
) -> tuple[Upload, ...]:
    if not request.attachments:
        return ()
    try:
        uploads = attachments.uploads_to_send(
            user, request.attachments, conversation.model, conversation.team_id, carried
        )
    except UploadRefused as refused:
        raise ChatError(refused.code, refused.message, "attachments") from None
    if conversation.pk is None and not request.content.strip():
        conversation.title = title_from(uploads[0].name)  # a question with files and no words
    return tuple(uploads)


def _upstream(turns: list[Turn], model: str) -> list[dict[str, Any]]:
    """The turns as upstream messages: files become content parts, newest images only."""
    shown = attachments.shown_images([turn.uploads for turn in turns], model)
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if turn.tool_calls:  # the calls and results, then the text, as the model saw them
            messages.extend(tooling.upstream_messages(turn.content, list(turn.tool_calls)))
            continue
        content = attachments.message_content(turn.content, turn.uploads, shown)
        content = attachments.with_images(content, turn.images)
        messages.append({"role": turn.role, "content": content})
    return messages


def _check_documents_fit(history: History, last: Turn, params: ChatParams) -> None:
    """History makes room by dropping old turns; documents too long for the window say so."""
    documents = [upload.name for upload in last.uploads if not upload.is_image]
    budget = context_budget(params.model, params.max_tokens)
    needed = history.tokens
    if documents and needed > budget:
        raise ChatError(
            "document_too_large",
            f"{', '.join(documents)} and your question come to about {needed:,} tokens;"
            f" {params.model} reads {budget:,} with room for its answer: attach a shorter part.",
            "attachments",
        )


def _check_question_fits(history: History, params: ChatParams) -> None:
    """History keeps the newest question however long: one the model cannot read (with the
    max tokens asked for) is refused here rather than by the model server."""
    window = policy.context_window(params.model)
    needed = history.tokens + (params.max_tokens or 0)
    if needed > window:
        kept = f" and {params.max_tokens:,} kept for the answer" if params.max_tokens else ""
        raise ChatError(
            "content_too_large",
            f"Your message (with the system prompt) comes to about {history.tokens:,} tokens;"
            f" with those{kept}, that is more than the {window:,} {params.model} reads."
            " Send a shorter message, or lower max tokens.",
            "content",
        )


def _apply_choices(
    user: Any,
    conversation: Conversation,
    request: SendRequest | RegenerateRequest,
    rules: policy.TeamRules,
) -> tuple[str, ...]:
    """The model settings, tools and answer format a frame asks for, onto the (unsaved)
    conversation; returns the fields that changed."""
    fields = _apply_settings(user, conversation, request.settings, rules)
    if request.tools is not None and request.tools != conversation.tools_enabled:
        conversation.tools_enabled = request.tools
        fields = (*fields, "tools_enabled")
    if request.response_format is not None:
        fields += json_output.choose_format(conversation, request.response_format)
    return fields


def next_settings(user: Any, conversation: Conversation) -> dict[str, Any]:
    """The model settings the conversation's next message will use unless it asks for others:
    its own, but for what the team's policy no longer allows (see _apply_settings)."""
    return preferences.effective_settings(user, conversation.team, stored=conversation.settings)


def _apply_settings(
    user: Any, conversation: Conversation, requested: dict[str, Any], rules: policy.TeamRules
) -> tuple[str, ...]:
    """Resolve the settings through the team's policy onto the (unsaved) conversation.

    Returns the fields that changed, for the write that saves them.
    """
    # What the conversation holds was checked when it was set: a policy changed since skips
    # what it no longer allows, as it does a saved default; only the request is refused.
    stored = conversation.settings if conversation.pk else {}
    asked = {k: v for k, v in requested.items() if v is not None}
    try:
        resolved = preferences.effective_settings(
            user, conversation.team, asked, rules, stored=stored
        )
    except policy.PolicyError as error:
        raise ChatError(error.code, error.message, error.field) from None
    changed = []
    for name in policy.SETTING_NAMES:
        if getattr(conversation, name) != resolved.get(name):
            setattr(conversation, name, resolved.get(name))
            changed.append(name)
    return tuple(changed)
