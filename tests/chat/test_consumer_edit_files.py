"""chat.edit of a question that carried files: the new version keeps them (as copies of its
own) unless `attachments` says which to keep and what to add."""

import pytest
from channels.db import database_sync_to_async
from django.db import DatabaseError

from chatapp.chat.actions import replies
from chatapp.chat.models import Message
from chatapp.uploads.actions import create_upload
from chatapp.uploads.models import Upload
from tests.uploads.files import image_bytes

from .test_consumer_attachments import answer_of, image_sizes, user_content

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def upload(team):
    def make(user, name, data):
        return database_sync_to_async(create_upload)(user, team, name, data)

    return make


async def edit(socket, message_id: int, content: str, **fields) -> dict:
    """chat.edit and the frames up to its answer's end; returns the new question's frame."""
    frame = {"type": "chat.edit", "request_id": "e1", "message_id": message_id, **fields}
    await socket.send({**frame, "content": content})
    frames = await socket.receive_until(lambda f: f["type"] in ("error", "message.done"))
    assert frames[-1]["type"] == "message.done", frames
    return next(
        f["message"]
        for f in frames
        if f["type"] == "message.created" and f["message"]["role"] == "user"
    )


async def asked_with_files(socket, upload, member) -> tuple[dict, Upload, Upload]:
    shot = await upload(member, "shot.png", image_bytes(64, 48))
    notes = await upload(member, "notes.md", b"# Plan\nShip on Friday.")
    ids = await socket.send_message("What is this?", attachments=[shot.pk, notes.pk])
    await answer_of(socket, ids)
    return ids, shot, notes


async def test_an_edit_keeps_the_questions_files(connect, member, sim, upload):
    socket = await connect(member)
    ids, shot, notes = await asked_with_files(socket, upload, member)

    question = await edit(socket, ids["user_message_id"], "And what about this?")

    content = user_content(sim.requests[-1])
    assert content[0]["text"] == '<document name="notes.md">\n# Plan\nShip on Friday.\n</document>'
    assert content[1] == {"type": "text", "text": "And what about this?"}
    assert image_sizes(content) == [(64, 48)]
    # Copies of its own: the first version keeps its files, and each goes with its message.
    assert [a["name"] for a in question["attachments"]] == ["shot.png", "notes.md"]
    copies = [u async for u in Upload.objects.filter(message_id=question["id"]).order_by("id")]
    assert {u.pk for u in copies}.isdisjoint({shot.pk, notes.pk})
    assert {u.file.name for u in copies}.isdisjoint({shot.file.name, notes.file.name})
    assert await Upload.objects.filter(message_id=ids["user_message_id"]).acount() == 2
    with shot.file.open("rb") as stored:
        shown = stored.read()
    await Message.objects.filter(pk=ids["user_message_id"]).adelete()
    copy = await Upload.objects.aget(pk=copies[0].pk)
    with copy.file.open("rb") as stored:
        assert stored.read() == shown


async def test_attachments_name_the_files_an_edit_keeps_and_adds(connect, member, sim, upload):
    socket = await connect(member)
    ids, shot, notes = await asked_with_files(socket, upload, member)
    more = await upload(member, "more.md", b"Ship on Monday instead.")

    question = await edit(
        socket, ids["user_message_id"], "Which day?", attachments=[notes.pk, more.pk]
    )

    assert [a["name"] for a in question["attachments"]] == ["notes.md", "more.md"]
    content = user_content(sim.requests[-1])
    assert image_sizes(content) == []
    assert "Ship on Monday instead." in content[1]["text"]
    assert (await Upload.objects.aget(pk=more.pk)).message_id == question["id"]


async def test_attachments_null_keeps_the_questions_files_as_leaving_it_out_does(
    connect, member, sim, upload
):
    socket = await connect(member)
    ids, _, _ = await asked_with_files(socket, upload, member)
    question = await edit(socket, ids["user_message_id"], "", attachments=None)
    assert [a["name"] for a in question["attachments"]] == ["shot.png", "notes.md"]
    assert image_sizes(user_content(sim.requests[-1])) == [(64, 48)]


async def test_an_edit_with_no_attachments_drops_them_all(connect, member, sim, upload):
    socket = await connect(member)
    ids, _, _ = await asked_with_files(socket, upload, member)
    question = await edit(socket, ids["user_message_id"], "Just words now", attachments=[])
    assert question["attachments"] == []
    assert user_content(sim.requests[-1]) == "Just words now"


async def test_a_blank_edit_keeping_the_questions_files_asks_about_them_alone(
    connect, member, sim, upload
):
    socket = await connect(member)
    ids, _, _ = await asked_with_files(socket, upload, member)
    question = await edit(socket, ids["user_message_id"], "  ")
    assert [a["name"] for a in question["attachments"]] == ["shot.png", "notes.md"]
    content = user_content(sim.requests[-1])
    assert image_sizes(content) == [(64, 48)]


async def test_a_blank_edit_of_a_question_without_files_is_refused(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message("Words only")
    await answer_of(socket, ids)
    for fields in ({}, {"attachments": []}):
        frame = {"type": "chat.edit", "message_id": ids["user_message_id"], "content": " "}
        reply = await socket.expect_error({**frame, **fields})
        assert (reply["error"]["code"], reply["error"]["field"]) == ("empty_content", "content")
    assert await Message.objects.filter(role="user").acount() == 1


async def test_files_of_another_question_are_not_kept(connect, member, sim, upload):
    socket = await connect(member)
    first, shot, _ = await asked_with_files(socket, upload, member)
    second = await socket.send_message("Thanks", conversation_id=first["conversation_id"])
    await answer_of(socket, second)
    reply = await socket.expect_error(
        {
            "type": "chat.edit",
            "message_id": second["user_message_id"],
            "content": "Thanks a lot",
            "attachments": [shot.pk],
        }
    )
    assert reply["error"]["code"] == "attachment_used"
    assert await Message.objects.filter(content="Thanks a lot").acount() == 0


async def test_kept_files_count_against_the_teams_storage(connect, member, sim, upload, settings):
    socket = await connect(member)
    ids, shot, notes = await asked_with_files(socket, upload, member)
    settings.UPLOAD_TEAM_QUOTA_BYTES = shot.size + notes.size + 10  # no room for copies
    reply = await socket.expect_error(
        {"type": "chat.edit", "message_id": ids["user_message_id"], "content": "Again?"}
    )
    assert reply["error"]["code"] == "storage_quota_exceeded"
    assert await Upload.objects.acount() == 2
    assert await Message.objects.filter(content="Again?").acount() == 0


async def test_an_edit_whose_rows_roll_back_leaves_no_copied_file_behind(
    connect, member, sim, upload, uploads_dir, monkeypatch
):
    """The copies of the question's files are stored as its rows are written: when the
    transaction then fails (here placing the answer), no row names them, so they go too."""
    socket = await connect(member)
    ids, shot, notes = await asked_with_files(socket, upload, member)
    before = sorted(path for path in uploads_dir.rglob("*") if path.is_file())
    assert len(before) == 2
    place = replies._placed

    def fail_on_the_answer(message: Message) -> Message:
        if message.role == "assistant":
            raise DatabaseError("the connection was lost")
        return place(message)

    monkeypatch.setattr(replies, "_placed", fail_on_the_answer)
    frame = {"type": "chat.edit", "request_id": "e1", "message_id": ids["user_message_id"]}
    await socket.send({**frame, "content": "And what about this?"})
    frames = await socket.receive_until(lambda f: f["type"] in ("error", "message.done"))
    assert frames[-1]["type"] == "error", frames
    assert await Upload.objects.acount() == 2
    assert sorted(path for path in uploads_dir.rglob("*") if path.is_file()) == before
