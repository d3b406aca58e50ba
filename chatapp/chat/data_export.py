"""Download all my data: one ZIP archive of everything a person keeps here, streamed as it is
built, one conversation and one file chunk at a time, so memory stays bounded and the first
bytes leave at once (a large account's archive is not held back until a proxy's read timeout).
Conversations and files are read BATCH at a time, a few short queries in autocommit mode for
each batch: no transaction or cursor stays open while the download runs. Should a step fail,
the archive ends without its central directory, which every unzip tool refuses, rather than
looking complete with entries missing.

- `conversations/<id>-<title>.json`: each conversation the user owns, as its JSON export
  (the shown branch and the whole tree); `.md` beside it: the Markdown export.
- `files/<id>-<name>`: every file the user uploaded, as stored.
- `account.json`: the account, the company sign-ins linked to it, its teams and roles, chat
  settings, API key names (never key material), the site admins' reads of the user's
  conversations (who, why, when), and the user's shares.

Temporary chats, and the files sent in them, are left out. Nothing of anyone else is read.
"""

import io
import json
import logging
import re
import zipfile
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from chatapp.accounts.models import UserSettings
from chatapp.chat.api import markdown_export, whole_trees
from chatapp.chat.models import AdminAccessGrant, Conversation, Share
from chatapp.core.batches import batches
from chatapp.core.text import file_slug
from chatapp.identity.models import OIDCIdentity
from chatapp.teams.models import ApiKey, Membership
from chatapp.uploads.models import Upload

log = logging.getLogger(__name__)

COPY_CHUNK = 1024 * 1024
# Conversations (or files) read together: a few queries for each batch, not for each one.
BATCH = 20
SETTING_FIELDS = ("model", "temperature", "max_tokens", "top_p")


class _Pipe(io.RawIOBase):
    """Where the archive is written: its bytes wait here until the next chunk is handed on.
    Not seekable, so zipfile writes each entry's sizes after its data."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def archive_chunks(user: Any) -> Iterator[bytes]:
    """The user's archive, chunk by chunk as it is built."""
    pipe = _Pipe()
    zf = zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED)
    try:
        conversations = Conversation.objects.for_user(user).saved().order_by("pk")
        # The prompt and schema each one's JSON names, read with it.
        conversations = conversations.select_related("system_prompt__json_schema", "json_schema")
        for batch in batches(conversations, BATCH):  # one deleted meanwhile is not in its batch
            for conversation, data in zip(batch, whole_trees(batch), strict=True):
                slug = file_slug(conversation.title) or "conversation"
                name = f"conversations/{conversation.pk}-{slug}"
                zf.writestr(f"{name}.json", _json(data))
                zf.writestr(f"{name}.md", markdown_export(data))
                yield pipe.take()
        for uploads in batches(_own_files(user), BATCH):
            for upload in uploads:
                yield from _copy_file(zf, upload, pipe)
        zf.writestr("account.json", _json(account_data(user)))
        zf.close()  # the central directory: only now does the archive read as complete
    except Exception:
        # The response has started: its status can no longer change. Without the central
        # directory, the download cannot pass for a whole archive.
        log.exception("data export failed part way for user %s", user.pk)
        return
    yield pipe.take()


def archive_name(user: Any) -> str:
    return f"llama-team-chat-{file_slug(user.get_username()) or 'data'}-{timezone.now():%Y%m%d}.zip"


def _own_files(user: Any):
    files = Upload.objects.filter(owner=user).exclude(message__conversation__temporary=True)
    return files.order_by("pk")


def _copy_file(zf: zipfile.ZipFile, upload: Upload, pipe: _Pipe) -> Iterator[bytes]:
    safe = re.sub(r"[^\w.-]+", "_", PurePath(upload.name).name)[:100] or "file"
    try:
        source = upload.file.open("rb")
    except OSError:  # the stored file is missing: say so rather than fail the whole archive
        zf.writestr(f"files/{upload.pk}-{safe}.missing.txt", "This file was not found in storage.")
        return
    with source, zf.open(f"files/{upload.pk}-{safe}", "w") as target:
        while chunk := source.read(COPY_CHUNK):
            target.write(chunk)
            yield pipe.take()


def account_data(user: Any) -> dict:
    stored = UserSettings.objects.filter(user=user).first()
    memberships = Membership.objects.filter(user=user).select_related("team").order_by("team_id")
    keys = ApiKey.objects.filter(user=user).order_by("created_at")
    shares = Share.objects.filter(owner=user).prefetch_related("members").defer("messages")
    return {
        "exported_at": timezone.now(),
        "account": {
            "id": user.pk,
            "username": user.get_username(),
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "date_joined": user.date_joined,
            "last_login": user.last_login,
        },
        # The company sign-ins that open this account: who the person is at their provider.
        "sign_in_identities": [
            {
                "issuer": identity.issuer,
                "subject": identity.subject,
                "linked_at": identity.created_at,
                "last_sign_in_at": identity.last_sign_in_at,
            }
            for identity in OIDCIdentity.objects.filter(user=user).order_by("pk")
        ],
        "teams": [
            {"id": m.team_id, "name": m.team.name, "role": m.role, "joined_at": m.created_at}
            for m in memberships
        ],
        "settings": {name: _setting(stored, name) for name in SETTING_FIELDS},
        # Names and dates only: a key's secret is never stored, and its prefix is left out too.
        "api_keys": [
            {
                "name": key.name,
                "team_id": key.team_id,
                "created_at": key.created_at,
                "expires_at": key.expires_at,
                "last_used_at": key.last_used_at,
                "revoked_at": key.revoked_at,
            }
            for key in keys
        ],
        # Site admins' reads of the user's conversations, as their settings page lists them.
        "admin_access": [
            {
                "conversation_id": grant.conversation_id,
                "admin": grant.admin_name,
                "reason": grant.reason,
                "granted_at": grant.created_at,
                "expires_at": grant.expires_at,
            }
            for grant in AdminAccessGrant.objects.filter(owner=user).order_by("created_at", "pk")
        ],
        "shares": [
            {
                "id": share.pk,
                "conversation_id": share.conversation_id,
                "team_id": share.team_id,
                "audience": share.audience,
                "members": sorted(member.pk for member in share.members.all()),
                "created_at": share.created_at,
            }
            for share in shares
        ],
    }


def _setting(stored: UserSettings | None, name: str) -> Any:
    value = getattr(stored, name) if stored is not None else None
    return None if value == "" else value  # blank: the team's default


def _json(data: dict) -> str:
    return json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)
