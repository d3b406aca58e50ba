"""Conversation titles written by the model, in the background after the first answer.

A new conversation starts with the first words of its question (`history.title_from`); once
an answer to its first question is complete (the first one, or while it still has its first
words, a regenerated one or one to an edit of that question), one short non-streamed
request to the same provider and model asks for a title, when the team's budgets still have
room for it: while it runs it holds its tokens against them, as an answer does. It replaces
the first words only if nobody renamed the conversation meanwhile, its tokens count as the
team's usage, and every tab of the owner hears of it (`conversation.updated`). A failure, or
a budget with no room left, leaves the first words, silently. LLAMA_GENERATE_TITLES turns it
off.
"""

import logging
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chatapp.accounts.sockets import user_group
from chatapp.chat import events
from chatapp.chat.actions import conversations, replies
from chatapp.core.layers import channel_layer
from chatapp.core.text import one_line, storable, visible
from chatapp.llm import (
    ChatParams,
    LlamaClient,
    LlmError,
    Usage,
    count_message_tokens,
    count_tokens_estimate,
)
from chatapp.teams import actions as team_actions
from chatapp.teams.models import Team, TeamPolicy
from chatapp.teams.policy import PolicyError

log = logging.getLogger(__name__)

# The simulator recognises this opening (llama_simulator.answers.TITLE_REQUEST).
TITLE_INSTRUCTION = (
    "Write a title for this conversation: at most six words saying what it is about, in the"
    " language of the question. Answer with the title only: no quotes, no full stop."
)
TITLE_MAX_TOKENS = 24
QUOTED_CHARACTERS = 1000  # of the question and of the answer: enough to tell the subject
TITLE_LENGTH = 80


@dataclass(frozen=True)
class TitleJob:
    """What naming one new conversation needs, gathered when its first answer ends."""

    conversation_id: int
    first_words: str  # the title it has until then
    question: str  # as it went upstream (after the team's data filter)
    answer: str
    client: LlamaClient
    model: str
    team: Team
    user: Any
    policy: TeamPolicy | None = None  # the team's, as the answer was planned


def title_messages(question: str, answer: str) -> list[dict[str, str]]:
    text = f"Question:\n{question[:QUOTED_CHARACTERS]}\n\nAnswer:\n{answer[:QUOTED_CHARACTERS]}"
    return [
        {"role": "system", "content": TITLE_INSTRUCTION},
        {"role": "user", "content": text},
    ]


def clean_title(text: str) -> str:
    """The model's reply as a title: its first line, without a "Title:" label, quotes,
    Markdown marks or a full stop, at most TITLE_LENGTH characters ("" if nothing is left)."""
    line = next((line for line in text.splitlines() if visible(line)), "")
    line = one_line(line)  # no control characters or marks that reorder it
    if line.lower().startswith("title:"):
        line = line[len("title:") :]
    line = line.strip().strip("\"'“”‘’«»*_#`").strip().rstrip(".").strip()
    if len(line) > TITLE_LENGTH:
        line = line[:TITLE_LENGTH].rsplit(" ", 1)[0] or line[:TITLE_LENGTH]
    return line if visible(line) else ""


def question_text(message: dict[str, Any]) -> str:
    """The text of an upstream user message (a string, or a list of parts with images). With
    attachments the question's own words come last upstream, after the documents
    (chatapp.uploads.context); here they come first, so the quote of the question holds them."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    texts = [
        str(part.get("text") or "")
        for part in parts
        if isinstance(part, dict) and part.get("type") == "text"
    ]
    return "\n".join(reversed(texts))


async def name_conversation(job: TitleJob) -> str | None:
    """Ask the model for a title and keep it; returns the title kept, or None."""
    params = ChatParams(model=job.model, max_tokens=TITLE_MAX_TOKENS)
    # The answer as stored: half a surrogate pair cannot go upstream.
    messages = title_messages(job.question, storable(job.answer))
    # Held as long as an answer's request may run, and the reaper's wait on top.
    lifetime = job.client.config.total_timeout + settings.CHAT_STALE_GENERATION_SECONDS
    prompt_tokens = count_message_tokens(messages)
    reserve = prompt_tokens + TITLE_MAX_TOKENS
    try:
        hold = None
        # A team with no budget as the answer was planned pays no trip (as for its thresholds).
        if job.policy is None or replies.has_budget(job.policy):
            hold = await database_sync_to_async(replies.hold_for_title)(
                job.team, job.user, reserve, lifetime
            )
    except PolicyError:
        log.info("No title for conversation %s: the team's budget is used", job.conversation_id)
        return None
    try:
        try:
            text, finish = await job.client.complete_chat(messages, params)
        except LlmError as error:
            log.info("No title for conversation %s: %s", job.conversation_id, error.code)
            return None
        title = clean_title(storable(text))
        # A server that reports no usage was billed all the same: counted by estimate, as
        # answers are.
        usage = finish.usage or Usage(prompt_tokens, count_tokens_estimate(text))
        kept = await database_sync_to_async(conversations.keep_generated_title)(
            job.conversation_id,
            job.first_words,
            title,
            usage=(usage.prompt_tokens, usage.completion_tokens),
            team=job.team,
            user=job.user,
            model=job.model,
            policy=job.policy,
            hold=hold,
        )
        hold = None  # released with the usage it gave way to
    finally:
        if hold is not None:
            await database_sync_to_async(team_actions.release_hold)(hold)
    if not kept:
        return None
    try:
        await channel_layer().group_send(
            user_group(job.user.pk), dict(events.conversation_updated(job.conversation_id, title))
        )
    except Exception:  # the channel layer is down: the tabs see the title when they reload
        log.warning("Could not announce the title of conversation %s", job.conversation_id)
    return title
