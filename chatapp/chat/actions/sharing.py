"""Sharing a conversation inside its team: a read-only snapshot of the shown branch, revoked
by deleting it, and "Continue in my chats", which copies a snapshot into the viewer's own
conversation. Sharing and revoking are audited in the conversation's team (never its text)."""

import itertools
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from chatapp.accounts import preferences
from chatapp.chat import tree
from chatapp.chat.errors import ChatError
from chatapp.chat.models import (
    Conversation,
    Message,
    MessageRole,
    MessageStatus,
    Share,
    ShareAudience,
)
from chatapp.core.locking import locked_if_there
from chatapp.core.words import counted
from chatapp.teams import policy, safety
from chatapp.teams.actions import audit
from chatapp.teams.models import AuditAction, Membership, SystemPrompt, Team
from chatapp.uploads.models import Upload

# Roles a snapshot keeps: the conversation's turns (tool traffic, if any, stays private).
SHARED_ROLES = (MessageRole.USER, MessageRole.ASSISTANT)
# How many of a person's shares a page lists (the JSON API's and Settings -> Your shares).
SHARES_PER_PAGE = 50


def snapshot(conversation: Conversation) -> list[dict[str, Any]]:
    """The shown branch as a share keeps it; a blocked answer's withheld text is left out,
    and so is the text of an answer still streaming where its verdict may withhold it (it may
    yet end blocked, and the share would keep it)."""
    branch = tree.conversation_branch(conversation.pk, conversation.active_leaf_id)
    rows = Message.objects.filter(pk__in=branch.path, role__in=SHARED_ROLES).values(
        "id", "role", "content", "status", "created_at", "error_code"
    )
    files = Upload.objects.filter(message__in=branch.path).by_message()
    rules = safety.SafetyRules.of(policy.team_policy(conversation.team))
    screened = rules.may_withhold_answers
    return [
        {
            "role": row["role"],
            "content": "" if _unshared(row["status"], screened) else row["content"],
            "status": row["status"],
            "unscreened": screened and row["status"] == MessageStatus.STREAMING,
            "created_at": row["created_at"].isoformat(),
            "files": [upload.name for upload in files.get(row["id"], [])],
            # A question refused by the safety policy stays out of a copy's later requests.
            "error_code": row["error_code"],
        }
        for row in rows
    ]


def _unshared(status: str, screened: bool) -> bool:
    if status == MessageStatus.BLOCKED:
        return True
    return screened and status == MessageStatus.STREAMING


def check_shareable(actor: Any, conversation: Conversation) -> None:
    """Refuse a temporary chat, and a conversation of a team its owner has left."""
    if conversation.temporary:
        raise ChatError("temporary_chat", "A temporary chat is not kept, so it cannot be shared.")
    if not Membership.objects.filter(team=conversation.team_id, user=actor).exists():
        raise ChatError("forbidden", "You are no longer in this conversation's team.")


def share_conversation(
    actor: Any, conversation: Conversation, audience: str, member_ids: Iterable[int] = ()
) -> Share:
    """Share the owner's conversation with its team or with chosen members of that team."""
    team = conversation.team
    check_shareable(actor, conversation)
    members: list[int] = []
    if audience == ShareAudience.MEMBERS:
        members = sorted(set(member_ids) - {actor.pk})
        if not members:
            raise ChatError("invalid", "Choose at least one other member of the team.", "members")
        found = Membership.objects.filter(team=team, user_id__in=members).count()
        if found != len(members):
            raise ChatError(
                "invalid", "Choose people who are members of this conversation's team.", "members"
            )
    with transaction.atomic():
        _check_still_there(conversation)
        share = Share.objects.create(
            conversation=conversation,
            owner=actor,
            team=team,
            audience=audience,
            title=conversation.title,
            model=conversation.model,
            system_prompt=conversation.system_prompt_text,
            messages=snapshot(conversation),
        )
        share.members.set(members)
        who = "the team" if audience == ShareAudience.TEAM else counted(len(members), "member")
        audit(
            team,
            actor,
            AuditAction.SHARE_CREATE,
            f"{actor.get_username()} shared conversation {conversation.pk} with {who}",
            share_id=share.pk,
            conversation_id=conversation.pk,
            audience=audience,
            members=members,
            messages=len(share.messages),
        )
    return share


def _check_still_there(conversation: Conversation) -> None:
    """A conversation deleted since the request found it (in another tab, by retention) is not
    shared. Its row is held until the share is written: a deletion starting meanwhile waits,
    and deletes the share with it."""
    if not locked_if_there(Conversation.objects.filter(pk=conversation.pk), no_key=True):
        raise ChatError("not_found", "No such conversation.")


def revoke_share(actor: Any, share: Share) -> None:
    """Delete the share; not_found when it went since the request found it (a double click
    on Revoke): the revocation that deleted it is the one the trail records."""
    with transaction.atomic():
        if not locked_if_there(Share.objects.filter(pk=share.pk)):
            raise ChatError("not_found", "This share was revoked meanwhile.")
        audit(
            share.team,
            actor,
            AuditAction.SHARE_REVOKE,
            f"{actor.get_username()} revoked share {share.pk} of conversation"
            f" {share.conversation_id}",
            share_id=share.pk,
            conversation_id=share.conversation_id,
        )
        share.delete()


def copied_content(entry: dict[str, Any]) -> str:
    """A shared message's text as its copy holds it: a question's files are not copied, so
    they are named, for the reader and for the model's later answers."""
    content = str(entry["content"])
    files = entry.get("files") or []
    if not files:
        return content
    named = f"[Files not included in the share: {', '.join(files)}]"
    return f"{content}\n\n{named}" if content else named


def fork_prompt(team: Team) -> SystemPrompt | None:
    """The system prompt a conversation continued from a share starts with: the team's
    default, as a new chat there would (a team not created yet has none)."""
    if team.pk is None:
        return None
    return SystemPrompt.objects.for_team(team).filter(is_default=True).first()


def fork_model(viewer: Any, team: Team) -> str:
    """The model a conversation continued from a share goes on with: the viewer's default
    there, as a new chat would."""
    try:
        model = preferences.effective_settings(viewer, team)["model"]
    except policy.PolicyError:
        model = policy.site_defaults()["model"]
    return str(model)


def fork_share(viewer: Any, share: Share, team: Team) -> Conversation:
    """A new conversation of the viewer's, in their current team, holding the snapshot as
    one straight branch. It starts as a new chat there would: the team's default prompt and
    the viewer's default model. not_found when the share was revoked since the request found
    it: its row is held until the copy is written, so a revocation starting meanwhile waits."""
    prompt = fork_prompt(team)
    model = fork_model(viewer, team)
    with transaction.atomic():
        if not locked_if_there(Share.objects.filter(pk=share.pk), no_key=True):
            raise ChatError("not_found", "This share was revoked meanwhile.")
        conversation = Conversation.objects.create(
            team=team,
            owner=viewer,
            title=share.title,
            model=model,
            system_prompt=prompt,
            system_prompt_text=prompt.content if prompt else "",
            system_prompt_locked=bool(prompt and prompt.locked),
        )
        copies = [
            Message(
                conversation=conversation,
                role=entry["role"],
                content=copied_content(entry),
                # Copied mid-answer: it ends here.
                status=MessageStatus.INTERRUPTED
                if entry["status"] == MessageStatus.STREAMING
                else entry["status"],
                error_code=entry.get("error_code", ""),
            )
            for entry in share.messages
        ]
        # Two statements for any length: the rows, then each one's link to the one before.
        Message.objects.bulk_create(copies)
        for parent, message in itertools.pairwise(copies):
            message.parent = parent
        Message.objects.bulk_update(copies[1:], ["parent"])
    return conversation
