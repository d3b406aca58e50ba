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


def test_broken_base64_is_refused(tmp_path, sent):
    data = export()
    data["conversations"][0]["messages"][0]["attachments"][0]["data"] = "%%%"
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
