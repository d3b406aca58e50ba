"""Conversations to and from a JSON document, for backups and moving between installations.

Users are referenced by username and teams by name (a personal team by its owner), so a file
can be restored into another installation. Every stored field of a conversation and of its
messages is carried, and the files sent with the messages (base64); passwords and provider
keys never are. Imported files are checked again as if uploaded, and each message's as if
sent with it.
"""

import base64
import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import Prefetch, Q
from django.utils import timezone
from pydantic import TypeAdapter
from pydantic import ValidationError as ShapeError

from chatapp.chat.actions.replies import INTERRUPTED_CODE
from chatapp.chat.api import FormatOut, RedactionOut, SafetyOut, ToolCallOut
from chatapp.chat.models import Conversation, Message, MessageRole, MessageStatus
from chatapp.core.batches import batches
from chatapp.core.words import counted
from chatapp.teams import safety
from chatapp.teams.actions import audit, ensure_personal_team
from chatapp.teams.models import (
    AuditAction,
    JsonSchema,
    Membership,
    Role,
    SafetyDecision,
    SafetyFlag,
    SafetyStage,
    SystemPrompt,
    Team,
)
from chatapp.uploads import actions as upload_actions
from chatapp.uploads.models import Upload
from chatapp.uploads.validation import UploadRefused

FORMAT = "llama-team-chat/conversations"
VERSION = 1
# Conversations read together: four queries for each batch, its rows held until written.
BATCH = 100
EXPORTED_STREAMING = (
    "This answer was still being written when it was exported: regenerate to try again."
)
# Relations written by reference instead of by value.
# A message's parent and a conversation's active_leaf are written as the message's position in
# the conversation's list (older files without them hold one straight branch).
CONVERSATION_LINKS = ("id", "team", "owner", "system_prompt", "json_schema", "active_leaf")
MESSAGE_LINKS = ("id", "conversation", "parent")
USER_FIELDS = ("username", "email", "first_name", "last_name")
# A message's JSON in the shapes the conversation API answers with: a file holding anything
# else is refused, rather than imported to fail every later read of the conversation.
MESSAGE_JSON: dict[str, TypeAdapter[Any]] = {
    "tool_calls": TypeAdapter(list[ToolCallOut]),
    "redactions": TypeAdapter(list[RedactionOut]),
    "safety": TypeAdapter(SafetyOut | None),
    "format": TypeAdapter(FormatOut | None),
}


class BackupError(Exception):
    """A file or a request that cannot be used; the message says what to do."""


def data_fields(model: type[models.Model], links: tuple[str, ...]) -> list[models.Field]:
    """Every stored field that is carried by value."""
    return [f for f in model._meta.concrete_fields if f.name not in links]


# ---------------------------------------------------------------------------------- export


@dataclass
class ExportResult:
    conversations: int = 0
    messages: int = 0
    missing_files: list[str] = field(default_factory=list)


def write_export(write: Callable[[str], Any], *, user=None, team=None) -> ExportResult:
    """One user's conversations (in any team), one team's (of any owner), or all of them,
    handed to `write` a conversation at a time: the document json.dumps(indent=1) would make,
    with memory held for one batch of conversations, not for the whole export."""
    conversations = Conversation.objects.saved()
    if user is not None:
        conversations = conversations.filter(owner=user)
        scope: dict[str, Any] = {"user": user.get_username()}
    elif team is not None:
        conversations = conversations.filter(team=team)
        scope = {"team": team.name}
    else:
        scope = {"all": True}
    teams = Team.objects.filter(pk__in=conversations.values("team_id"))
    if team is not None:
        teams = teams | Team.objects.filter(pk=team.pk)
    members = Membership.objects.select_related("user").order_by("user__username")
    teams = teams.select_related("personal_owner").prefetch_related(
        Prefetch("memberships", queryset=members)
    )
    users = get_user_model().objects.filter(
        Q(pk__in=conversations.values("owner_id")) | Q(memberships__team__in=teams.values("pk"))
    )
    head = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": timezone.now().isoformat(),
        "scope": scope,
        "users": [_user_entry(u) for u in sorted(users.distinct(), key=lambda u: u.get_username())],
        "teams": [_team_entry(t) for t in teams.order_by("pk")],
    }
    result = ExportResult()
    # The head's closing brace gives way to the conversations, written as they are read.
    write(_dumps(head)[: -len("\n}")] + ',\n "conversations": [')
    for batch in _conversation_batches(conversations):
        for conversation, messages in batch:
            entry = _conversation_entry(conversation, messages, result.missing_files)
            write(("\n  " if result.conversations == 0 else ",\n  ") + _dumps(entry, depth=2))
            result.conversations += 1
            result.messages += len(messages)
    write("\n ]" if result.conversations else "]")
    # Files lost from the storage: left out, so the rest of the backup is still made.
    write(',\n "missing_files": ' + _dumps(result.missing_files, depth=1) + "\n}\n")
    return result


def _dumps(value: Any, depth: int = 0) -> str:
    """json.dumps(indent=1) of a value written `depth` levels into the document."""
    return json.dumps(value, ensure_ascii=False, indent=1).replace("\n", "\n" + " " * depth)


# A message with its safety flags and its files.
Exported = tuple[Message, list[SafetyFlag], list[Upload]]


def _conversation_batches(conversations) -> Iterator[list[tuple[Conversation, list[Exported]]]]:
    """The conversations oldest first, BATCH at a time with their messages, flags and files:
    the same four queries for each batch, by conversation id, whatever its messages number."""
    ordered = conversations.select_related("team", "owner", "system_prompt", "json_schema")
    for batch in batches(ordered.order_by("created_at", "id"), BATCH):
        ids = [c.pk for c in batch]
        flag_rows = SafetyFlag.objects.filter(message__conversation__in=ids)
        flags = _grouped(flag_rows.select_related("decided_by"), "message_id")
        files = _grouped(Upload.objects.filter(message__conversation__in=ids), "message_id")
        messages: dict[int, list[Exported]] = {pk: [] for pk in ids}
        for message in Message.objects.filter(conversation__in=ids).order_by("id"):
            exported = (message, flags.get(message.pk, []), files.get(message.pk, []))
            messages[message.conversation_id].append(exported)
        yield [(c, messages[c.pk]) for c in batch]


def _grouped(rows: models.QuerySet, key: str) -> dict[Any, list]:
    grouped: dict[Any, list] = {}
    for row in rows.order_by("pk"):
        grouped.setdefault(getattr(row, key), []).append(row)
    return grouped


def _user_entry(user) -> dict:
    return {name: getattr(user, name, "") for name in USER_FIELDS}


def _team_entry(team: Team) -> dict:
    return {
        "key": team.pk,
        "name": team.name,
        "personal_owner": team.personal_owner.get_username() if team.personal_owner else None,
        "members": [
            {"username": m.user.get_username(), "role": m.role} for m in team.memberships.all()
        ],
    }


def _conversation_entry(
    conversation: Conversation, messages: list[Exported], missing: list[str]
) -> dict:
    entry = _values(conversation, data_fields(Conversation, CONVERSATION_LINKS))
    prompt = conversation.system_prompt
    position: dict[int | None, int] = {m.pk: index for index, (m, _, _) in enumerate(messages)}
    entry.update(
        team=conversation.team_id,
        owner=conversation.owner.get_username(),
        system_prompt=prompt.name if prompt else None,
        json_schema=conversation.json_schema.name if conversation.json_schema else None,
        active_leaf=position.get(conversation.active_leaf_id),
        messages=[_message_entry(*m, position, missing) for m in messages],
    )
    return entry


def _message_entry(
    message: Message,
    flags: list[SafetyFlag],
    files: list[Upload],
    position: dict[int | None, int],
    missing: list[str],
) -> dict:
    entry = _values(message, data_fields(Message, MESSAGE_LINKS))
    entry["parent"] = position.get(message.parent_id)
    # What Llama Guard flagged: a blocked question never goes upstream again (planning reads
    # the flag), and the team's reviewers keep it on their queue.
    entry["safety_flags"] = [
        {
            "stage": flag.stage,
            "blocked": flag.blocked,
            "categories": flag.categories,
            "created_at": flag.created_at.isoformat(),
            "decision": flag.decision,
            "decided_at": flag.decided_at.isoformat() if flag.decided_at else None,
            "decided_by": flag.decided_by.get_username() if flag.decided_by else None,
        }
        for flag in flags
    ]
    entry["attachments"] = []
    for upload in files:
        try:
            entry["attachments"].append(_attachment_entry(upload))
        except OSError:
            missing.append(f"{upload.name} (conversation {message.conversation_id})")
    return entry


def _attachment_entry(upload: Upload) -> dict:
    with upload.file.open("rb") as file:
        data = base64.b64encode(file.read()).decode("ascii")
    return {"name": upload.name, "content_type": upload.content_type, "data": data}


def _values(obj: models.Model, fields: list[models.Field]) -> dict:
    return {f.name: _json_value(f.value_from_object(obj)) for f in fields}


def _json_value(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


# ---------------------------------------------------------------------------------- import


@dataclass
class ImportResult:
    conversations: int = 0
    messages: int = 0
    skipped: int = 0
    created_users: list[str] = field(default_factory=list)
    created_teams: list[str] = field(default_factory=list)
    files: list[Upload] = field(default_factory=list, repr=False)
    # Conversations this import wrote, or found present for an entry: none stands for two.
    accounted: set[int] = field(default_factory=set, repr=False)

    def summary(self) -> str:
        lines = [
            f"Imported {counted(self.conversations, 'conversation')}"
            f" ({counted(self.messages, 'message')}, {counted(len(self.files), 'file')});"
            f" skipped {self.skipped} already present."
        ]
        if self.created_users:
            lines.append(f"Created users (no password yet): {', '.join(self.created_users)}")
        if self.created_teams:
            lines.append(f"Created teams: {', '.join(self.created_teams)}")
        return "\n".join(lines)


def import_conversations(
    data, *, create_missing: bool = False, into_team: Team | None = None, dry_run: bool = False
) -> ImportResult:
    """Restore a document from export_conversations, all or nothing.

    A conversation already present (the same owner, creation time and questions) is
    skipped, so importing a file twice changes nothing; two started in the same microsecond
    are still two. Missing users and teams are an error unless create_missing.
    """
    _check_header(data)
    result = ImportResult()
    try:
        with transaction.atomic():
            users = _map_users(data["users"], create_missing, result)
            teams = _map_teams(data["teams"], users, create_missing, into_team, result)
            for index, entry in enumerate(data["conversations"]):
                _import_conversation(index, entry, users, teams, result)
            if dry_run:
                transaction.set_rollback(True)
    except BaseException:
        _remove_files(result.files)
        raise
    if dry_run:
        _remove_files(result.files)
    return result


def _remove_files(uploads: list[Upload]) -> None:
    """Files stored for rows that were rolled back: the storage has no transactions."""
    for upload in uploads:
        upload.file.delete(save=False)


def _check_header(data) -> None:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"This is not a conversations export (expected format {FORMAT!r}).")
    if data.get("version") != VERSION:
        raise BackupError(
            f"Export version {data.get('version')!r} is not supported (this one reads {VERSION})."
        )
    for key in ("users", "teams", "conversations"):
        # The conversations may come as they are read (chatapp.chat.json_stream).
        if not isinstance(data.get(key), list | Iterator if key == "conversations" else list):
            raise BackupError(f"The export has no {key!r} list.")


def _map_users(entries: list, create_missing: bool, result: ImportResult) -> dict:
    user_model = get_user_model()
    names = [_required(e, "username", "users") for e in entries]
    if twice := [name for name, times in Counter(names).items() if times > 1]:
        raise BackupError(f"The user {twice[0]!r} is listed twice in 'users'.")
    users = {u.get_username(): u for u in user_model.objects.filter(username__in=names)}
    for name in names:
        # The site knows an account by its name in any letter case (signup, the admin site),
        # and stores names in their NFKC form (a file may hold one of an earlier release).
        if name not in users and (found := _existing_account(name)) is not None:
            users[name] = found
    missing = [e for e in entries if e["username"] not in users]
    # Signup and the admin site refuse a name another account holds in another letter case.
    held = Counter(stored_name(e["username"]).casefold() for e in missing)
    if same := [e["username"] for e in missing if held[stored_name(e["username"]).casefold()] > 1]:
        raise BackupError(f"The users {same[0]!r} and {same[1]!r} are one name here.")
    if missing and not create_missing:
        listed = ", ".join(e["username"] for e in missing)
        raise BackupError(f"No such users here: {listed}. Create them, or pass --create-missing.")
    if missing and not user_model.objects.exists():
        # The first account becomes the site admin; an imported one must not.
        raise BackupError("Create the site admin first (manage.py createsuperuser).")
    for entry in missing:
        extra = {k: entry.get(k) or "" for k in USER_FIELDS if k != "username"}
        if unstorable := _unstorable(list(extra.values())):
            raise BackupError(f"User {entry['username']!r}: a name or email holds {unstorable}.")
        _check_fits(entry["username"], extra)
        # Company sign-in finds an account by its address: one address, one account.
        if extra["email"] and user_model.objects.filter(email__iexact=extra["email"]).exists():
            raise BackupError(
                f"User {entry['username']!r}: the email {extra['email']} is another account's"
                " here. Change it in the file, or create the account by hand."
            )
        user = user_model.objects.create_user(username=entry["username"], password=None, **extra)
        users[entry["username"]] = user
        result.created_users.append(user.get_username())
        access = {name: getattr(user, name) for name in ("is_active", "is_staff", "is_superuser")}
        summary = f"import_conversations created the user {user.get_username()}"
        who = user.get_username()
        audit(None, None, AuditAction.USER_CREATE, summary, user=who, source="import", **access)
    return users


def _check_fits(username: str, extra: dict) -> None:
    """Refuse a user to create whose fields are no text, or longer than an account holds."""
    for key, value in {**extra, "username": stored_name(username)}.items():
        if not isinstance(value, str):
            raise BackupError(f"User {username[:40]!r}: the {key} is not text.")
        field = get_user_model()._meta.get_field(key)
        longest = field.max_length if isinstance(field, models.CharField) else None
        if longest is not None and len(value) > longest:
            raise BackupError(
                f"User {username[:40]!r}: the {key} is longer than {longest} characters,"
                " more than an account holds."
            )


def stored_name(name: str) -> str:
    """The name an account named `name` is stored under (NFKC, as create_user stores it)."""
    return get_user_model().normalize_username(name)


def _existing_account(name: str):
    """The account here named `name` as it would be stored, else the one account of that name
    in another letter case (several such are refused: the file must say which is meant)."""
    stored = stored_name(name)
    if exact := get_user_model().objects.filter(username=stored).first():
        return exact
    found = list(get_user_model().objects.filter(username__iexact=stored)[:2])
    if len(found) > 1:
        raise BackupError(
            f"Several accounts here are named {stored!r} in different letter cases:"
            " rename the user in the file to the one meant."
        )
    return found[0] if found else None


def _map_teams(entries, users, create_missing, into_team, result) -> dict:
    """Exported team key -> local team."""
    shared = [e for e in entries if isinstance(e, dict) and not e.get("personal_owner")]
    if into_team is not None and len(shared) > 1:
        raise BackupError("The export holds several teams; --team can only stand for one.")
    teams = {}
    for entry in entries:
        name = _required(entry, "name", "teams")
        if not isinstance(entry.get("key"), int | str | None):
            raise BackupError(f"Team {name!r}: key must be a number.")
        owner = entry.get("personal_owner")
        if owner:
            teams[entry.get("key")] = _personal_team(_user(owner, users, f"team {name!r}"))
        elif into_team is not None:
            teams[entry.get("key")] = into_team
        else:
            teams[entry.get("key")] = _shared_team(entry, users, create_missing, result)
    return teams


def _personal_team(user) -> Team:
    return ensure_personal_team(user)


def _shared_team(entry, users, create_missing, result) -> Team:
    name = entry["name"]
    matches = list(Team.objects.filter(name=name, personal_owner__isnull=True)[:2])
    if len(matches) > 1:
        raise BackupError(f"Several teams are named {name!r}: pass --team ID to choose one.")
    if matches:
        return matches[0]
    if not create_missing:
        raise BackupError(f"No team named {name!r} here. Pass --team ID, or --create-missing.")
    team = Team.objects.create(name=name)
    audit(
        team,
        None,
        AuditAction.TEAM_CREATE,
        f"import_conversations created the team {name}",
        source="import",
    )
    seen = set()
    for member in _list(entry.get("members", []), f"team {name!r}", "members"):
        role = member.get("role") if isinstance(member, dict) else None
        if role not in Role.values:
            raise BackupError(f"Team {name!r}: unknown role {role!r}.")
        user = _user(member.get("username"), users, f"team {name!r}")
        if user.pk in seen:
            raise BackupError(f"Team {name!r}: {user.get_username()!r} is listed twice.")
        seen.add(user.pk)
        Membership.objects.create(team=team, user=user, role=role)
        who = user.get_username()
        summary = f"import_conversations added {who} as {role}"
        audit(team, None, AuditAction.MEMBER_ADD, summary, user=who, role=role, source="import")
    result.created_teams.append(name)
    return team


def _import_conversation(index, entry, users, teams, result) -> None:
    where = f"conversation {index + 1}"
    if not isinstance(entry, dict):
        raise BackupError(f"{where} is not an object.")
    owner = _user(entry.get("owner"), users, where)
    if not isinstance(entry.get("team"), int | str) or entry["team"] not in teams:
        raise BackupError(f"{where}: its team is not in the export's team list.")
    team = teams[entry["team"]]
    values = _clean(Conversation, CONVERSATION_LINKS, entry, where)
    message_entries = _list(entry.get("messages"), where, "messages")
    message_values = [
        _ended_here(_clean(Message, MESSAGE_LINKS, m, f"{where}, message {i + 1}"))
        for i, m in enumerate(message_entries)
    ]
    if _already_present(owner, values, message_values, result):
        result.skipped += 1
        return
    prompt = _prompt(team, entry.get("system_prompt"))
    schema_name = entry.get("json_schema")  # the team's schema of that name, if it has one
    schema = (
        JsonSchema.objects.filter(team=team, name=schema_name).first()
        if isinstance(schema_name, str)
        else None
    )
    conversation = Conversation(
        owner=owner, team=team, system_prompt=prompt, json_schema=schema, **values
    )
    _insert(Conversation, [conversation], [values], where)
    result.accounted.add(conversation.pk)
    messages = [Message(conversation=conversation, **v) for v in message_values]
    _insert(Message, messages, message_values, where)
    _link_tree(conversation, messages, entry, where)
    for i, (message, message_entry) in enumerate(zip(messages, entry["messages"], strict=True)):
        flags = message_entry.get("safety_flags", [])  # none in files from before they were
        for flag_entry in _list(flags, f"{where}, message {i + 1}", "safety_flags"):
            _import_flag(flag_entry, message, conversation, users, f"{where}, message {i + 1}")
        files = _list(
            message_entry.get("attachments", []), f"{where}, message {i + 1}", "attachments"
        )
        _import_files(files, message, conversation, f"{where}, message {i + 1}", result)
    result.conversations += 1
    result.messages += len(messages)


def _ended_here(values: dict) -> dict:
    """A message as this site keeps it: tied to none of its server processes, and an answer
    that was streaming when the file was written ended, its text as written (reaping it would
    count its tokens into this site's month; the other site counted them)."""
    values["server_process"] = ""
    if values.get("status") == MessageStatus.STREAMING:
        # One still awaiting its question's verdict keeps saying so: that question was not
        # sent, and stays out of later requests (chatapp.chat.actions.replies.mark_interrupted).
        unchecked = values.get("error_code") == safety.UNCHECKED_QUESTION_CODE
        values.update(
            status=MessageStatus.INTERRUPTED,
            error_code=safety.UNCHECKED_QUESTION_CODE if unchecked else INTERRUPTED_CODE,
            error_message=safety.UNCHECKED_QUESTION if unchecked else EXPORTED_STREAMING,
        )
    return values


def _already_present(owner, values: dict, messages: list[dict], result: ImportResult) -> bool:
    """Whether the entry's conversation is here already: one of the owner's, created at the
    same instant, not written by this import nor found for another of its entries, whose
    questions and system turns begin with the entry's, in order (their role, their text and,
    when the file has it, their time). Those are never changed nor deleted once written, so
    a conversation continued since the export is still found, and two started in the same
    microsecond are two. An answer's text is not compared: it may have been streaming."""
    turns = [m for m in messages if m.get("role") != MessageRole.ASSISTANT]
    same_start = Conversation.objects.filter(owner=owner, created_at=values["created_at"])
    for conversation in same_start.exclude(pk__in=result.accounted).order_by("pk"):
        rows = conversation.messages.exclude(role=MessageRole.ASSISTANT).order_by("pk")
        present = list(rows.values("role", "content", "created_at")[: len(turns)])
        if len(present) == len(turns) and all(
            row[name] == turn[name]
            for row, turn in zip(present, turns, strict=True)
            for name in ("role", "content", "created_at")
            if name in turn
        ):
            result.accounted.add(conversation.pk)
            return True
    return False


def _link_tree(conversation: Conversation, messages: list[Message], entry: dict, where) -> None:
    """Parents and the shown branch, from positions in the list; none given: a straight line."""
    for index, (message, message_entry) in enumerate(zip(messages, entry["messages"], strict=True)):
        parent = message_entry.get("parent", index - 1 if index else None)
        if parent is not None and not (
            isinstance(parent, int) and not isinstance(parent, bool) and 0 <= parent < index
        ):
            raise BackupError(f"{where}, message {index + 1}: parent must be an earlier message.")
        message.parent_id = messages[parent].pk if parent is not None else None
    Message.objects.bulk_update(messages, ["parent"])
    leaf = entry.get("active_leaf")
    if leaf is not None:
        if isinstance(leaf, bool) or not isinstance(leaf, int) or not 0 <= leaf < len(messages):
            raise BackupError(f"{where}: active_leaf must be one of its messages.")
        conversation.active_leaf_id = messages[leaf].pk
        conversation.save(update_fields=["active_leaf"])


DATETIME = models.DateTimeField()  # for reading a time as the model's own fields do


def _import_flag(entry, message: Message, conversation: Conversation, users, where: str) -> None:
    if not isinstance(entry, dict):
        raise BackupError(f"{where}: a safety flag is not an object.")
    categories = entry.get("categories", [])
    valid = (
        entry.get("stage") in SafetyStage.values
        and isinstance(entry.get("blocked"), bool)
        and isinstance(categories, list)
        and all(isinstance(c, str) and not _unstorable(c) for c in categories)
        and entry.get("decision", "") in SafetyDecision.values
    )
    if not valid:
        raise BackupError(f"{where}: a safety flag needs a stage, blocked and categories.")
    times = {}
    for name in ("created_at", "decided_at"):
        if entry.get(name) is None:
            continue
        try:
            times[name] = DATETIME.clean(entry[name], None)
        except (ValidationError, TypeError, ValueError):
            raise BackupError(f"{where}: a safety flag's {name} is not a time.") from None
    SafetyFlag.objects.create(
        team=conversation.team,
        author=conversation.owner,
        message=message,
        stage=entry["stage"],
        blocked=entry["blocked"],
        categories=categories,
        decision=entry.get("decision", ""),
        decided_by=_reviewer(entry.get("decided_by"), users),
        **times,
    )


def _reviewer(username, users: dict):
    """Who decided on a flag: the account of that name here, found as the file's users are
    (`_map_users`), or nobody (one since deleted, or a name several accounts share)."""
    if not isinstance(username, str) or not username:
        return None
    if found := users.get(username):
        return found
    with suppress(BackupError):
        return _existing_account(username)
    return None


def _import_files(entries: list, message: Message, conversation: Conversation, where, result):
    """A message's files, refused as a whole unless one message could carry them here: at
    most UPLOAD_MAX_FILES_PER_MESSAGE (as many images as /v1 saves with a question,
    UPLOAD_CONTEXT_MAX_IMAGES, when all are images) and UPLOAD_MAX_MESSAGE_BYTES together
    as stored, each file checked as an upload and counted against the team's quota."""
    most = settings.UPLOAD_MAX_FILES_PER_MESSAGE
    most_images = max(most, settings.UPLOAD_CONTEXT_MAX_IMAGES)
    if len(entries) > most_images:  # before storing any of them
        raise _too_many_files(where, len(entries), most, most_images)
    uploads = [_import_file(entry, message, conversation, where, result) for entry in entries]
    if len(uploads) > most and not all(upload.is_image for upload in uploads):
        raise _too_many_files(where, len(uploads), most, most_images)
    total, most_bytes = sum(upload.size for upload in uploads), settings.UPLOAD_MAX_MESSAGE_BYTES
    if total > most_bytes:
        raise BackupError(
            f"{where}: its files come to {total:,} bytes as stored; a message may carry"
            f" {most_bytes:,} (UPLOAD_MAX_MESSAGE_BYTES): remove files from it in the export,"
            " or raise the setting."
        )


def _too_many_files(where: str, count: int, most: int, most_images: int) -> BackupError:
    images = f", or {most_images} if all are images" if most_images > most else ""
    return BackupError(
        f"{where} carries {count} files; a message may carry at most {most}{images}"
        " (UPLOAD_MAX_FILES_PER_MESSAGE): remove files from it in the export, or raise the"
        " setting."
    )


def _import_file(entry, message: Message, conversation: Conversation, where: str, result) -> Upload:
    name = _required(entry, "name", f"{where}'s attachments")
    try:
        data = base64.b64decode(entry.get("data") or "", validate=True)
    except (ValueError, TypeError):  # binascii.Error, or characters outside ASCII
        raise BackupError(f"{where}: the file {name!r} is not valid base64.") from None
    try:
        # A former member's conversation keeps its files: they are restored, not uploaded.
        upload = upload_actions.create_upload(
            conversation.owner, conversation.team, name, data, as_member=False
        )
        result.files.append(upload)
        upload_actions.attach([upload], message)
    except UploadRefused as refused:
        raise BackupError(f"{where}: the file {name!r} was refused: {refused.message}") from None
    return upload


def _prompt(team: Team, name):
    if not name:
        return None
    return SystemPrompt.objects.filter(team=team, name=name).first()


def _clean(model, links, entry, where) -> dict:
    if not isinstance(entry, dict):
        raise BackupError(f"{where} is not an object.")
    values = {}
    for f in data_fields(model, links):
        if f.name not in entry:
            # A text field left blank is "" (a file from before the field was added has none).
            if f.has_default() or f.null or (f.blank and f.empty_strings_allowed):
                continue
            raise BackupError(f"{where}: {f.name} is missing.")
        value = entry[f.name]
        if unstorable := _unstorable(value):
            raise BackupError(f"{where}: {f.name} holds {unstorable}.")
        try:
            values[f.name] = f.clean(value, None)
        except ValidationError as exc:
            raise BackupError(f"{where}: {f.name}: {' '.join(exc.messages)}") from None
        except (TypeError, ValueError):  # a number where a date goes, and the like
            raise BackupError(f"{where}: {f.name}: {value!r} is not a valid value.") from None
        if model is Message and f.name in MESSAGE_JSON:
            try:
                MESSAGE_JSON[f.name].validate_python(values[f.name])
            except ShapeError as exc:
                problem = exc.errors()[0]
                place = ".".join(str(part) for part in problem["loc"])
                raise BackupError(
                    f"{where}: {f.name}{'.' + place if place else ''}: {problem['msg']}."
                ) from None
    return values


def _insert(model, objects: list, values: list[dict], where: str) -> None:
    """Insert, then write back the timestamps that saving stamps with the time of import."""
    try:
        with transaction.atomic():
            model.objects.bulk_create(objects)
    except IntegrityError as exc:
        raise BackupError(f"{where} breaks a database rule: {exc}") from None
    auto = [
        f.name
        for f in model._meta.concrete_fields
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    for obj, given in zip(objects, values, strict=True):
        for name in auto:
            if name in given:
                setattr(obj, name, given[name])
    if auto and objects:
        model.objects.bulk_update(objects, auto)


def _required(entry, key: str, where: str) -> str:
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, str) or not value:
        raise BackupError(f"An entry in {where!r} has no {key}.")
    if unstorable := _unstorable(value):
        raise BackupError(f"The {key} {value!r} in {where!r} holds {unstorable}.")
    return value


def _unstorable(value) -> str | None:
    """What in the value no database stores as text (NUL, a lone surrogate), if anything."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate"
        return None
    if isinstance(value, dict):
        value = [*value, *value.values()]
    if isinstance(value, list):
        return next((found for item in value if (found := _unstorable(item))), None)
    return None


def _user(username, users: dict, where: str):
    if not isinstance(username, str) or username not in users:
        raise BackupError(f"{where} names the user {username!r}, who is not in the export.")
    return users[username]


def _list(value, where: str, what: str) -> list:
    if not isinstance(value, list):
        raise BackupError(f"{where}: {what} must be a list.")
    return value
