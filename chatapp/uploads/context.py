"""Attachments as the model reads them: documents as named context blocks, images as data URLs.

A user message with attachments goes upstream with a list as its content: one text part per
document, the question's text part, then one image_url part per image (the same shape in the
native Llama API and the OpenAI-compatible one).
"""

import base64
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings

from chatapp.core.words import counted
from chatapp.uploads.actions import limits as upload_limits
from chatapp.uploads.models import Upload
from chatapp.uploads.validation import CheckedFile, UploadRefused, check_image


def sees_images(model: str) -> bool:
    """Whether the model understands images; the model list does not say, the site does."""
    return model in settings.LLAMA_IMAGE_MODELS


def document_block(upload: Upload) -> str:
    """A document's text framed with its name (and its page count for PDFs)."""
    pages = f' pages="{upload.pages}"' if upload.pages else ""
    return f'<document name="{upload.name}"{pages}>\n{upload.text}\n</document>'


def image_part(upload: Upload) -> dict[str, Any] | None:
    """The image as a data URL part; None when the storage no longer holds its file."""
    try:
        with upload.file.open("rb") as file:
            return data_url_part(upload.content_type, file.read())
    except OSError:
        return None


def data_url_part(content_type: str, data: bytes) -> dict[str, Any]:
    url = f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url}}


def with_images(
    content: str | list[dict[str, Any]], images: Sequence[CheckedFile]
) -> str | list[dict[str, Any]]:
    """A message's content with images sent inline (see inline_image) after its text."""
    if not images:
        return content
    if isinstance(content, str):
        content = [{"type": "text", "text": content}] if content.strip() else []
    return [*content, *(data_url_part(image.content_type, image.data) for image in images)]


def check_inline_images(images: Sequence[tuple[str, bytes]], model: str) -> None:
    """Images a client sent inline, each (where it was, its bytes), against the model and the
    limits of a chat message's attachments; UploadRefused else."""
    if images and not sees_images(model):
        raise UploadRefused(
            "model_cannot_see_images",
            f"{model} does not understand images: choose a model that does (Llama 4), or"
            " send the question without them.",
        )
    cap = settings.UPLOAD_CONTEXT_MAX_IMAGES
    if len(images) > cap:
        raise UploadRefused(
            "too_many_images",
            f"The messages carry {len(images)} images; one request may carry"
            f" {counted(cap, 'image')}: send the newest ones.",
        )
    total, most = sum(len(data) for _, data in images), settings.UPLOAD_MAX_MESSAGE_BYTES
    if total > most:
        raise UploadRefused(
            "attachments_too_large",
            f"The images come to {total / 1024**2:.1f} MB; one request may carry"
            f" {most / 1024**2:.0f} MB.",
        )


def inline_image(where: str, data: bytes) -> CheckedFile:
    """An image sent inline, cleaned as an uploaded image is."""
    return check_image(where, data, upload_limits())


def message_content(
    text: str, uploads: Iterable[Upload], show_images: Iterable[int] = ()
) -> str | list[dict[str, Any]]:
    """The content of a user message: its text alone, or its parts when it has attachments.

    `show_images` holds the ids of the images the model gets; the others, and those whose file
    the storage lost, are named in a line of text, so the model knows an image was there.
    """
    uploads = list(uploads)
    if not uploads:
        return text
    shown = set(show_images)
    parts = [{"type": "text", "text": document_block(u)} for u in uploads if not u.is_image]
    hidden = [u.name for u in uploads if u.is_image and u.pk not in shown]
    if hidden:
        names = ", ".join(hidden)
        parts.append({"type": "text", "text": f"[Images no longer shown to you: {names}]"})
    images = [(u, image_part(u)) for u in uploads if u.is_image and u.pk in shown]
    lost = [u.name for u, part in images if part is None]
    if lost:
        names = ", ".join(lost)
        parts.append(
            {"type": "text", "text": f"[Images no longer stored, not shown to you: {names}]"}
        )
    if text.strip():
        parts.append({"type": "text", "text": text})
    parts += [part for _, part in images if part is not None]
    return parts


def uploads_to_send(
    user: Any,
    upload_ids: Sequence[int],
    model: str,
    team_id: int,
    carried: Sequence[Upload] = (),
) -> list[Upload]:
    """The user's unsent uploads for a new message in a conversation of the team (whose
    storage they count against), in the order given; UploadRefused else. `carried`: the
    files of a question being edited, which its new version may carry again."""
    cap = settings.UPLOAD_MAX_FILES_PER_MESSAGE
    if len(upload_ids) > cap:
        raise UploadRefused(
            "too_many_files", f"Attach at most {counted(cap, 'file')} to one message."
        )
    found = {u.pk: u for u in Upload.objects.filter(owner=user, pk__in=upload_ids)}
    if len(found) != len(set(upload_ids)):
        raise UploadRefused(
            "not_found", "An attached file was deleted or is not yours: attach it again."
        )
    uploads = [found[upload_id] for upload_id in dict.fromkeys(upload_ids)]
    elsewhere = next((u for u in uploads if u.team_id != team_id), None)
    if elsewhere is not None:
        raise UploadRefused(
            "not_found", f"{elsewhere.name} was attached in another team: attach it again here."
        )
    again = {u.pk for u in carried}
    sent = next((u for u in uploads if u.message_id is not None and u.pk not in again), None)
    if sent is not None:
        raise UploadRefused(
            "attachment_used", f"{sent.name} was already sent with a message: attach it again."
        )
    total, most = sum(u.size for u in uploads), settings.UPLOAD_MAX_MESSAGE_BYTES
    if total > most:
        raise UploadRefused(
            "attachments_too_large",
            f"The files come to {total / 1024**2:.1f} MB; one message may carry"
            f" {most / 1024**2:.0f} MB: send some of them with another message.",
        )
    if any(u.is_image for u in uploads) and not sees_images(model):
        raise UploadRefused(
            "model_cannot_see_images",
            f"{model} does not understand images: choose a model that does (Llama 4), or"
            " remove the images.",
        )
    return uploads


def shown_images(uploads_by_turn: Iterable[Iterable[Upload]], model: str) -> set[int]:
    """The images the model gets: the newest ones of the conversation, up to the cap."""
    if not sees_images(model):
        return set()
    images = [u.pk for uploads in uploads_by_turn for u in uploads if u.is_image]
    return set(images[-settings.UPLOAD_CONTEXT_MAX_IMAGES :])
