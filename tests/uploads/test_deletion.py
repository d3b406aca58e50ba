"""Files go with their row: conversation, team or user deleted, or never sent for a day."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models.signals import pre_delete
from django.utils import timezone

from chatapp.chat.models import Conversation, Message
from chatapp.uploads.actions import attach
from chatapp.uploads.models import Upload
from tests.uploads.conftest import stored_files

pytestmark = pytest.mark.django_db(transaction=True)  # the files go once the deletion commits


@pytest.fixture
def sent(member, team, make_upload):
    """An upload sent in a conversation of the member's, with its file on disk."""
    upload = make_upload(member)
    conversation = Conversation.objects.create(team=team, owner=member, model="m")
    message = Message.objects.create(conversation=conversation, role="user", content="look")
    Upload.objects.filter(pk=upload.pk).update(message=message)
    return conversation


def test_deleting_the_conversation_deletes_its_files(member_client, sent, uploads_dir):
    assert len(stored_files(uploads_dir)) == 1
    assert member_client.delete(f"/api/conversations/{sent.pk}/").status_code == 204
    assert not Upload.objects.exists()
    assert stored_files(uploads_dir) == []


def test_a_file_the_storage_fails_to_delete_leaves_the_rest_going(
    member, member_client, sent, make_upload, uploads_dir
):
    """The conversation is deleted whatever the storage answers for one file: the others go
    too, and the person deleting it is told it worked, not an internal error."""
    stuck = Upload.objects.get()
    other = make_upload(member, "notes.md", b"# notes")
    Upload.objects.filter(pk=other.pk).update(message=Message.objects.get())
    path = uploads_dir / stuck.file.name  # now a folder with something in it: not removable
    path.unlink()
    path.mkdir()
    (path / "inside").write_bytes(b"x")
    assert member_client.delete(f"/api/conversations/{sent.pk}/").status_code == 204
    assert not Conversation.objects.exists()
    assert not (uploads_dir / other.file.name).exists()


def test_deleting_the_team_deletes_its_files(team, member, make_upload, sent, uploads_dir):
    make_upload(member)  # not sent yet
    team.delete()
    assert not Upload.objects.exists()
    assert stored_files(uploads_dir) == []


def test_deleting_the_user_deletes_their_files(member, make_upload, sent, uploads_dir):
    make_upload(member)
    member.delete()
    assert not Upload.objects.exists()
    assert stored_files(uploads_dir) == []


def test_other_users_files_stay(member, owner, make_upload, sent, uploads_dir):
    kept = make_upload(owner)
    member.delete()
    assert list(Upload.objects.all()) == [kept]
    assert stored_files(uploads_dir) == [uploads_dir / kept.file.name]


def age(upload: Upload, hours: float) -> None:
    Upload.objects.filter(pk=upload.pk).update(created_at=timezone.now() - timedelta(hours=hours))


def test_sweep_deletes_unsent_uploads_older_than_a_day(member, make_upload, sent, uploads_dir):
    old, fresh = make_upload(member), make_upload(member)
    age(old, 25)
    age(fresh, 23)
    Upload.objects.filter(message__isnull=False).update(
        created_at=timezone.now() - timedelta(days=9)
    )
    call_command("sweep_uploads")
    assert set(Upload.objects.values_list("pk", flat=True)) == {
        fresh.pk,
        Upload.objects.get(message__isnull=False).pk,
    }
    assert len(stored_files(uploads_dir)) == 2


def test_sweep_takes_a_max_age(member, make_upload):
    upload = make_upload(member)
    age(upload, 2)
    call_command("sweep_uploads", max_age_hours=1)
    assert not Upload.objects.exists()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e300", "a day"])
def test_sweep_refuses_a_bad_max_age(member, make_upload, value):
    make_upload(member)
    with pytest.raises(CommandError, match="--max-age-hours: .*hours above 0"):
        call_command("sweep_uploads", "--max-age-hours", value)
    assert Upload.objects.count() == 1


def test_sweep_keeps_an_upload_sent_while_it_runs(member, team, make_upload, uploads_dir):
    """The sweep reads the stale uploads, then deletes them one by one: one sent with a message
    meanwhile (a composer left open overnight) is no longer "never sent", and stays."""
    first, second = make_upload(member), make_upload(member)
    age(first, 25)
    age(second, 25)
    conversation = Conversation.objects.create(team=team, owner=member, model="m")
    question = Message.objects.create(conversation=conversation, role="user", content="look")

    def send_second(sender, instance, **kwargs):  # the send lands while the sweep runs
        if instance.pk == first.pk:
            attach([Upload.objects.get(pk=second.pk)], question)

    pre_delete.connect(send_second, sender=Upload)
    try:
        call_command("sweep_uploads")
    finally:
        pre_delete.disconnect(send_second, sender=Upload)

    assert list(question.attachments.values_list("pk", flat=True)) == [second.pk]
    assert stored_files(uploads_dir) == [uploads_dir / second.file.name]
