"""The uploads' write path: store a checked file, delete one, sweep the never-sent ones."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from chatapp.core.locking import lock_rows, locked_if_there
from chatapp.core.words import counted
from chatapp.teams.models import Membership, Team, TeamPolicy
from chatapp.teams.policy import context_window, site_models
from chatapp.teams.usage import storage_use
from chatapp.uploads.models import Upload
from chatapp.uploads.validation import CheckedFile, Limits, UploadRefused, check_file

log = logging.getLogger(__name__)

# About four characters per token: no document longer than the largest window of the models
# the site offers can be read.
CHARS_PER_TOKEN = 4
NOT_IN_TEAM = "not_found"  # UploadRefused's code for an uploader no longer in the team


def limits() -> Limits:
    return Limits(
        max_bytes=settings.UPLOAD_MAX_FILE_BYTES,
        max_pixels=settings.UPLOAD_MAX_IMAGE_PIXELS,
        max_side=settings.UPLOAD_IMAGE_MAX_SIDE,
        max_text_chars=CHARS_PER_TOKEN * max(context_window(model) for model in site_models()),
    )


def read_limited(file, max_bytes: int) -> bytes:
    """At most one byte more than allowed, so an oversized file is known without reading it all."""
    file.seek(0)
    return file.read(max_bytes + 1)


def check_unsent(user) -> None:
    """UploadRefused when the user holds as many files never sent as one may: the team's
    quota counts bytes, so without it a script could store millions of one-byte files."""
    most = settings.UPLOAD_MAX_UNSENT_FILES
    if Upload.objects.unattached().filter(owner=user).count() >= most:
        raise UploadRefused(
            "too_many_unsent_files",
            f"You have {counted(most, 'file')} uploaded and not sent yet: send them, or remove"
            " some from the message, before attaching more.",
        )


def create_upload(user, team, name: str, data: bytes, *, as_member: bool = True) -> Upload:
    """Check the file and store it for the user in the team; UploadRefused changes nothing.
    `as_member`: the user must still be in the team when the file is written (an import
    restores the files of former members too)."""
    checked = check_file(name, data, limits())
    stored: list[Upload] = []
    with discard_unless_committed(stored), transaction.atomic():
        _check_quota(team, checked)  # the team's row first, in the order removals lock
        if as_member:
            _check_still_member(user, team)
        upload = Upload(
            owner=user,
            team=team,
            kind=checked.kind,
            name=checked.name,
            content_type=checked.content_type,
            size=len(checked.data),
            width=checked.width,
            height=checked.height,
            pages=checked.pages,
            text=checked.text,
        )
        stored.append(_stored(upload, checked.data))
    return stored[0]


def _check_still_member(user, team) -> None:
    """A member removed while the file was on its way stores nothing in the team. The
    membership is held until the file's row is written: a removal starting meanwhile waits,
    and the file is then the former member's, unsent, as any they held."""
    if not locked_if_there(Membership.objects.filter(team=team, user=user), no_key=True):
        raise UploadRefused(NOT_IN_TEAM, "You are not in that team.")


def _stored(upload: Upload, data: bytes) -> Upload:
    """The upload saved with its file; a failed insert leaves no file behind."""
    upload.file.save(upload.name, ContentFile(data), save=False)
    try:
        upload.save()
    except Exception:
        upload.file.delete(save=False)
        raise
    return upload


def _check_quota(team, checked: CheckedFile) -> None:
    _check_room_locked(team, len(checked.data))


def _check_room_locked(team, size: int) -> None:
    if not settings.UPLOAD_TEAM_QUOTA_BYTES:
        return
    # Uploads of one team queue here, so two at once cannot both squeeze under the quota.
    # NO KEY: rows that refer to the team (a send's) do not wait for the file to be stored.
    lock_rows(Team.objects.filter(pk=team.pk), no_key=True)
    check_room(team, size)


def check_room(team, size: int) -> None:
    """UploadRefused when `size` more bytes of files would take the team over its quota."""
    if not settings.UPLOAD_TEAM_QUOTA_BYTES:
        return
    use = storage_use(team)
    used, quota = use.used, use.quota
    if used + size > quota:
        raise UploadRefused(
            "storage_quota_exceeded",
            f"Your team has used {used / 1024**2:.1f} MB of its {quota / 1024**2:.0f} MB for"
            " files: delete old conversations with attachments, or ask an admin for more.",
        )


def store_images(user, team, images: list[CheckedFile], message) -> list[Upload]:
    """Keep images an API client sent inline as the saved message's attachments (checked
    and cleaned already); call inside its transaction. The team's room for them is checked
    again here, under its lock (UploadRefused): other files may have taken it since the
    request was planned. One that cannot be stored leaves none of the others' files behind;
    should the transaction roll back later, its caller discards the files
    (`discard_unless_committed`)."""
    stored: list[Upload] = []
    if images:
        _check_room_locked(team, sum(len(checked.data) for checked in images))
    with discard_unless_committed(stored):
        for number, checked in enumerate(images, 1):
            upload = Upload(
                owner=user,
                team=team,
                message=message,
                kind=checked.kind,
                # image/png -> image-1.png: each of the types a cleaned image has is a suffix
                name=f"image-{number}.{checked.content_type.partition('/')[2]}",
                content_type=checked.content_type,
                size=len(checked.data),
                width=checked.width,
                height=checked.height,
            )
            stored.append(_stored(upload, checked.data))
    return stored


def discard_files(uploads: list[Upload]) -> None:
    """Delete the stored files of uploads whose rows were rolled back: no row names them any
    more, so neither a deletion's signal nor the sweep would ever find them. A file the
    storage fails to delete is logged and stays behind."""
    for upload in uploads:
        try:
            upload.file.delete(save=False)
        except Exception:
            log.exception("Deleting the file of an upload that was not kept failed")


@contextmanager
def discard_unless_committed(stored: list[Upload]) -> Iterator[list[Upload]]:
    """Around a transaction in which uploads are saved with their files, gathered in `stored`
    as each is written: should the block fail (the transaction rolled back, or its commit
    failed), their files are deleted (`discard_files`) and `stored` emptied, since no row
    names them any more. Enter it just outside the `transaction.atomic()`, so that a failed
    commit counts too; around a savepoint, within another for the enclosing transaction."""
    try:
        yield stored
    except BaseException:
        discard_files(stored)
        stored.clear()
        raise


def copy_onto(uploads: list[Upload], message, stored: list[Upload]) -> list[Upload]:
    """Copies of files another message carries, for this one (a new version of an edited
    question keeps its files): each message's files go with it, so each has its own, and
    they count against the team's storage again. Call inside the message's transaction,
    within `discard_unless_committed(stored)`: each copy joins `stored` as it is written."""
    if not uploads:
        return []
    copies = []
    for upload in uploads:
        try:
            with upload.file.open("rb") as source:
                data = source.read()
        except OSError:
            raise UploadRefused(
                "not_found",
                f"{upload.name} is no longer stored: edit the question again without it.",
            ) from None
        copies.append((upload, data))
    _check_room_locked(message.conversation.team, sum(len(data) for _, data in copies))
    made = []
    for upload, data in copies:
        copy = _stored(
            Upload(
                owner=upload.owner,
                team_id=message.conversation.team_id,
                message=message,
                kind=upload.kind,
                name=upload.name,
                content_type=upload.content_type,
                size=len(data),
                width=upload.width,
                height=upload.height,
                pages=upload.pages,
                text=upload.text,
            ),
            data,
        )
        stored.append(copy)
        made.append(copy)
    return made


def delete_upload(upload: Upload) -> None:
    """Refused (UploadRefused legal_hold, nothing deleted) for a file sent in a conversation
    of a team under legal hold: the hold keeps the conversation whole."""
    with transaction.atomic():
        sent_in = Team.objects.filter(conversations__messages__attachments=upload)
        # A hold put on meanwhile waits for the deletion, or stops it.
        lock_rows(TeamPolicy.objects.filter(team__in=sent_in))
        if sent_in.held().exists():
            raise UploadRefused(
                "legal_hold",
                f"{upload.name} was sent in a conversation of a team under legal hold, which"
                " keeps it until the team's owners lift the hold in its policy.",
            )
        upload.delete()  # the file follows once committed (signals.py)


def sweep_unattached(max_age_hours: float | None = None) -> int:
    """Delete uploads never sent with a message; returns how many went."""
    if max_age_hours is None:
        max_age_hours = settings.UPLOAD_UNATTACHED_HOURS
    cutoff = timezone.now() - timedelta(hours=max_age_hours)
    stale = Upload.objects.unattached().filter(created_at__lt=cutoff)
    count = 0
    for pk in list(stale.values_list("pk", flat=True)):  # one by one, each file with its row
        with transaction.atomic():
            # Read again under lock: one sent with a message since the list was read stays,
            # and a send attaching it now waits for this transaction (then finds it gone).
            lock_rows(stale.filter(pk=pk))
            upload = stale.filter(pk=pk).first()
            if upload is None:
                continue
            upload.delete()
        count += 1
    if count:
        log.info("Deleted %d uploads that were never sent", count)
    return count


def attach(uploads: list[Upload], message) -> None:
    """Give the uploads to the message being saved; call inside its transaction."""
    ids = [upload.pk for upload in uploads]
    attached = Upload.objects.filter(pk__in=ids, message__isnull=True).update(message=message)
    if attached != len(ids):  # deleted or sent from another tab since the plan was made
        raise UploadRefused(
            "attachment_used", "An attached file was deleted or sent meanwhile: attach it again."
        )
    for upload in uploads:
        upload.message = message
