"""Backups carry the files sent with messages; an import checks them again as uploads."""

import base64
import io
import json

import pytest
from django.core.management import CommandError, call_command

from chatapp.chat.models import Conversation, Message
from chatapp.uploads.models import Upload
from tests.uploads import files
from tests.uploads.conftest import stored_files

pytestmark = pytest.mark.django_db(transaction=True)  # files go once deletions commit


@pytest.fixture
def sent(member, team, make_upload):
    conversation = Conversation.objects.create(team=team, owner=member, model="m", title="t")
    question = Message.objects.create(conversation=conversation, role="user", content="look")
    Message.objects.create(conversation=conversation, role="assistant", content="a chart")
    uploads = [make_upload(member), make_upload(member, "report.pdf", files.pdf_with_text("Q3"))]
    Upload.objects.filter(pk__in=[u.pk for u in uploads]).update(message=question)
    return conversation


def export() -> dict:
    out = io.StringIO()
    call_command("export_conversations", "--user", "max", stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def restore(tmp_path, data, *args) -> str:
    path = tmp_path / "backup.json"
    path.write_text(json.dumps(data))
    out = io.StringIO()
    call_command("import_conversations", str(path), *args, stdout=out)
    return out.getvalue()


def contents() -> list[tuple[str, str, bytes]]:
    return [
        (u.message.content, u.name, u.file.read())
        for u in Upload.objects.select_related("message").order_by("name")
    ]


def test_a_round_trip_restores_the_files(tmp_path, sent, uploads_dir):
    before = contents()
    data = export()
    attached = data["conversations"][0]["messages"][0]["attachments"]
    assert [a["name"] for a in attached] == ["photo.png", "report.pdf"]
    sent.delete()
    assert stored_files(uploads_dir) == []

    output = restore(tmp_path, data)

    assert "(2 messages, 2 files)" in output
    assert contents() == before
    assert len(stored_files(uploads_dir)) == 2
    assert Upload.objects.get(name="report.pdf").text == "[Page 1]\nQ3"


def test_a_dry_run_leaves_no_files(tmp_path, sent, uploads_dir):
    data = export()
    sent.delete()
    restore(tmp_path, data, "--dry-run")
    assert not Upload.objects.exists()
    assert stored_files(uploads_dir) == []


def test_a_file_that_is_not_what_it_claims_is_refused_whole(tmp_path, sent, uploads_dir):
    data = export()
    data["conversations"][0]["messages"][0]["attachments"][1]["data"] = base64.b64encode(
        b"<html>not a pdf</html>"
    ).decode()
    data["conversations"][0]["messages"][0]["attachments"][1]["name"] = "report.png"
    sent.delete()
    with pytest.raises(CommandError, match="report.png"):
        restore(tmp_path, data)
    assert not Conversation.objects.exists()
    assert not Upload.objects.exists()
    assert stored_files(uploads_dir) == []


@pytest.mark.parametrize("broken", ["%%%", "aGVsbG8=é", 12, ["aGVsbG8="]])
def test_broken_base64_is_refused(tmp_path, sent, broken):
    """Characters outside ASCII too: base64 has none of them."""
    data = export()
    data["conversations"][0]["messages"][0]["attachments"][0]["data"] = broken
    sent.delete()
    with pytest.raises(CommandError, match="not valid base64"):
        restore(tmp_path, data)
    assert not Conversation.objects.exists()


def test_a_file_missing_from_storage_is_left_out_and_named(tmp_path, sent, uploads_dir):
    lost = Upload.objects.get(name="photo.png")
    lost.file.storage.delete(lost.file.name)
    out, err = io.StringIO(), io.StringIO()
    call_command("export_conversations", "--user", "max", stdout=out, stderr=err)
    data = json.loads(out.getvalue())
    attached = data["conversations"][0]["messages"][0]["attachments"]
    assert [a["name"] for a in attached] == ["report.pdf"]
    assert data["missing_files"] == [f"photo.png (conversation {sent.pk})"]
    assert "1 file not found in storage, left out: photo.png" in err.getvalue()
    assert "photo.png" in err.getvalue()
    sent.delete()
    assert "(2 messages, 1 file)" in restore(tmp_path, data)


def with_files(data: dict, *attachments: dict) -> dict:
    """The export with its first question carrying these files instead of its own."""
    data["conversations"][0]["messages"][0]["attachments"] = list(attachments)
    return data


def image_entry(number: int) -> dict:
    data = files.image_bytes(color=(number, 30, 30))
    return {"name": f"image-{number}.png", "content_type": "image/png", "data": b64(data)}


def text_entry(number: int) -> dict:
    data = f"note {number}\n".encode()
    return {"name": f"note-{number}.txt", "content_type": "text/plain", "data": b64(data)}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def refused_whole(tmp_path, data, uploads_dir, match: str) -> None:
    with pytest.raises(CommandError, match=match):
        restore(tmp_path, data)
    assert not Conversation.objects.exists()
    assert not Upload.objects.exists()
    assert stored_files(uploads_dir) == []


def test_more_files_on_a_message_than_one_may_carry_are_refused_naming_it(
    tmp_path, sent, uploads_dir, settings
):
    settings.UPLOAD_MAX_FILES_PER_MESSAGE = 2
    data = with_files(export(), text_entry(1), text_entry(2), image_entry(3))
    sent.delete()
    refused_whole(
        tmp_path, data, uploads_dir, r"conversation 1, message 1 carries 3 files; a message may"
    )


def test_a_message_of_thousands_of_small_files_is_refused(tmp_path, sent, uploads_dir):
    data = with_files(export(), *[text_entry(n) for n in range(3000)])
    sent.delete()
    refused_whole(tmp_path, data, uploads_dir, "message 1 carries 3000 files")


def test_a_question_with_as_many_images_as_a_v1_request_sends_is_restored(
    tmp_path, sent, uploads_dir, settings
):
    """/v1 saves a question's inline images, up to UPLOAD_CONTEXT_MAX_IMAGES of them, as its
    attachments: its backup restores."""
    settings.UPLOAD_MAX_FILES_PER_MESSAGE = 2
    settings.UPLOAD_CONTEXT_MAX_IMAGES = 4
    data = with_files(export(), *[image_entry(n) for n in range(4)])
    sent.delete()
    assert "(2 messages, 4 files)" in restore(tmp_path, data)
    data = with_files(data, *[image_entry(n) for n in range(5)])
    Conversation.objects.all().delete()
    refused_whole(tmp_path, data, uploads_dir, "message 1 carries 5 files")


def test_files_of_a_message_larger_together_than_one_may_carry_are_refused(
    tmp_path, sent, uploads_dir, settings
):
    settings.UPLOAD_MAX_MESSAGE_BYTES = len(files.image_bytes()) + 10
    data = with_files(export(), image_entry(1), image_entry(2))
    sent.delete()
    refused_whole(tmp_path, data, uploads_dir, "conversation 1, message 1: its files come to")


def test_a_file_over_the_size_cap_is_refused_naming_it(tmp_path, sent, uploads_dir, settings):
    settings.UPLOAD_MAX_FILE_BYTES = 100
    data = with_files(export(), image_entry(1))
    sent.delete()
    refused_whole(tmp_path, data, uploads_dir, "message 1: the file 'image-1.png' was refused")


def test_files_past_the_teams_quota_are_refused(tmp_path, sent, uploads_dir, settings):
    settings.UPLOAD_TEAM_QUOTA_BYTES = len(files.image_bytes()) + 10
    data = with_files(export(), image_entry(1), image_entry(2))
    sent.delete()
    refused_whole(tmp_path, data, uploads_dir, "Your team has used")
