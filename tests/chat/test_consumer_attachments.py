"""chat.send with attachments: what goes upstream in both protocols, what the page is told,
and every refusal (nothing written, nothing sent)."""

import base64
import io

import pytest
from channels.db import database_sync_to_async
from PIL import Image

from chatapp.chat.models import Conversation, Message
from chatapp.teams.actions import create_team
from chatapp.uploads.actions import create_upload
from chatapp.uploads.models import Upload
from tests.uploads.files import image_bytes, pdf_with_text

from .conftest import joined_text

pytestmark = pytest.mark.django_db(transaction=True)

TEXT_ONLY = "Llama-3.3-70B-Instruct"


@pytest.fixture
def upload(team):
    def make(user, name="shot.png", data=None):
        data = image_bytes(64, 48) if data is None else data
        return database_sync_to_async(create_upload)(user, team, name, data)

    return make


def user_content(request_body: dict) -> list:
    return request_body["messages"][-1]["content"]


def image_sizes(content: list) -> list[tuple[int, int]]:
    sizes = []
    for part in content:
        if part["type"] == "image_url":
            data = part["image_url"]["url"].split("base64,", 1)[1]
            sizes.append(Image.open(io.BytesIO(base64.b64decode(data))).size)
    return sizes


async def answer_of(socket, ids) -> str:
    frames = await socket.until_type("message.done", ids["message_id"])
    assert frames[-1]["status"] == "complete", frames[-1]
    return joined_text(frames, ids["message_id"])


@pytest.mark.parametrize("protocol", ["llama", "openai"])
async def test_images_and_documents_go_upstream_as_content_parts(
    connect, member, sim, settings, upload, protocol
):
    if protocol == "openai":
        settings.LLAMA_API_PROTOCOL = "openai"
        settings.LLAMA_API_BASE_URL = sim.openai_url
    shot = await upload(member, "shot.png", image_bytes(64, 48))
    report = await upload(member, "report.pdf", pdf_with_text("Revenue grew", "Costs fell"))
    socket = await connect(member)
    ids = await socket.send_message("What changed?", attachments=[shot.pk, report.pk])

    answer = await answer_of(socket, ids)
    assert "Received 1 image (64×48) and 1 document: report.pdf (2 pages)" in answer
    content = user_content(sim.requests[-1])
    assert [part["type"] for part in content] == ["text", "text", "image_url"]
    assert content[0]["text"].startswith('<document name="report.pdf" pages="2">\n[Page 1]')
    assert content[1] == {"type": "text", "text": "What changed?"}
    assert content[2]["image_url"]["url"].startswith("data:image/png;base64,")
    assert image_sizes(content) == [(64, 48)]


async def test_the_page_is_told_the_attachments(connect, member, sim, upload):
    shot = await upload(member)
    socket = await connect(member)
    ids = await socket.send_message("Look", attachments=[shot.pk])
    question = next(f for f in ids["frames"] if f["type"] == "message.created")
    assert question["message"]["attachments"] == [
        {
            "id": shot.pk,
            "kind": "image",
            "name": "shot.png",
            "content_type": "image/png",
            "bytes": shot.size,
            "width": 64,
            "height": 48,
            "pages": None,
        }
    ]
    await answer_of(socket, ids)
    await socket.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = await socket.until_type("conversation.state")
    asked, answered = state[-1]["messages"]
    assert [a["id"] for a in asked["attachments"]] == [shot.pk]
    assert "attachments" not in answered
    stored = await Upload.objects.aget(pk=shot.pk)
    assert stored.message_id == ids["user_message_id"]


async def test_a_message_may_be_files_alone(connect, member, sim, upload):
    notes = await upload(member, "notes.md", b"# Plan\nShip on Friday.")
    socket = await connect(member)
    ids = await socket.send_message("", attachments=[notes.pk])
    assert "1 document: notes.md" in await answer_of(socket, ids)
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.title == "notes.md"
    assert user_content(sim.requests[-1]) == [
        {"type": "text", "text": '<document name="notes.md">\n# Plan\nShip on Friday.\n</document>'}
    ]


async def test_images_stay_in_later_turns_within_the_cap(connect, member, sim, settings, upload):
    settings.UPLOAD_CONTEXT_MAX_IMAGES = 2
    socket = await connect(member)
    conversation_id = None
    for number, size in enumerate([(10, 10), (20, 10), (30, 10)]):
        shot = await upload(member, f"shot{number}.png", image_bytes(*size))
        ids = await socket.send_message(
            f"Picture {number}", conversation_id=conversation_id, attachments=[shot.pk]
        )
        conversation_id = ids["conversation_id"]
        await answer_of(socket, ids)
    ids = await socket.send_message("And now?", conversation_id=conversation_id)
    answer = await answer_of(socket, ids)
    assert "Received 2 images (20×10, 30×10)" in answer
    first_question = sim.requests[-1]["messages"][0]["content"]
    assert first_question == [
        {"type": "text", "text": "[Images no longer shown to you: shot0.png]"},
        {"type": "text", "text": "Picture 0"},
    ]


async def test_text_only_model_refuses_images_and_nothing_is_written(connect, member, sim, upload):
    shot = await upload(member)
    socket = await connect(member)
    error = await socket.expect_error(
        {
            "type": "chat.send",
            "request_id": "r1",
            "conversation_id": None,
            "content": "What is this?",
            "attachments": [shot.pk],
            "settings": {"model": TEXT_ONLY},
        }
    )
    assert error["error"]["code"] == "model_cannot_see_images"
    assert error["error"]["field"] == "attachments"
    assert TEXT_ONLY in error["error"]["message"]
    assert not await Conversation.objects.aexists()
    assert (await Upload.objects.aget(pk=shot.pk)).message_id is None
    assert list(sim.requests) == []


async def test_regenerating_an_image_question_with_a_text_only_model_is_refused(
    connect, member, sim, upload
):
    shot = await upload(member)
    socket = await connect(member)
    ids = await socket.send_message("What is this?", attachments=[shot.pk])
    await answer_of(socket, ids)
    asked = len(sim.requests)
    error = await socket.expect_error(
        {
            "type": "chat.regenerate",
            "message_id": ids["message_id"],
            "settings": {"model": TEXT_ONLY},
        }
    )
    assert error["error"]["code"] == "model_cannot_see_images"
    assert TEXT_ONLY in error["error"]["message"]
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.model != TEXT_ONLY
    assert await Message.objects.acount() == 2
    assert len(sim.requests) == asked


async def test_text_only_model_still_reads_documents(connect, member, sim, upload):
    notes = await upload(member, "notes.txt", b"Budget: 12 apples")
    socket = await connect(member)
    ids = await socket.send_message(
        "Sum it up", attachments=[notes.pk], settings={"model": TEXT_ONLY}
    )
    assert "1 document: notes.txt" in await answer_of(socket, ids)


async def test_earlier_images_are_left_out_for_a_text_only_model(connect, member, sim, upload):
    shot = await upload(member)
    socket = await connect(member)
    ids = await socket.send_message("See this", attachments=[shot.pk])
    await answer_of(socket, ids)
    ids = await socket.send_message(
        "Go on", conversation_id=ids["conversation_id"], settings={"model": TEXT_ONLY}
    )
    await answer_of(socket, ids)
    first = sim.requests[-1]["messages"][0]["content"]
    assert [part["type"] for part in first] == ["text", "text"]
    assert "shot.png" in first[0]["text"]


def send(attachments, content="Look") -> dict:
    return {
        "type": "chat.send",
        "request_id": "r1",
        "conversation_id": None,
        "content": content,
        "attachments": attachments,
    }


async def refused(socket, frame: dict, sim) -> dict:
    error = await socket.expect_error(frame)
    assert not await Conversation.objects.aexists()
    assert not await Message.objects.aexists()
    assert list(sim.requests) == []
    return error["error"]


async def test_an_image_gone_from_storage_is_named_and_the_conversation_goes_on(
    connect, member, sim, upload
):
    """A sent image whose file the storage lost is named to the model, as an image past the cap
    is: the conversation's next questions are still answered."""
    shot = await upload(member, "chart.png")
    socket = await connect(member)
    ids = await socket.send_message("See this", attachments=[shot.pk])
    await answer_of(socket, ids)
    shot.file.storage.delete(shot.file.name)
    ids = await socket.send_message("Go on", conversation_id=ids["conversation_id"])
    await answer_of(socket, ids)
    first = sim.requests[-1]["messages"][0]["content"]
    assert first == [
        {"type": "text", "text": "[Images no longer stored, not shown to you: chart.png]"},
        {"type": "text", "text": "See this"},
    ]


async def test_someone_elses_upload_is_not_found(connect, member, owner, sim, upload):
    theirs = await upload(owner)
    socket = await connect(member)
    error = await refused(socket, send([theirs.pk]), sim)
    assert (error["code"], error["field"]) == ("not_found", "attachments")
    assert (await Upload.objects.aget(pk=theirs.pk)).message_id is None


async def test_an_upload_of_another_team_is_refused(connect, member, sim):
    """It counts against that team's storage, whose admins could not see or delete it."""
    elsewhere = await database_sync_to_async(create_team)(member, "Side project")
    shot = await database_sync_to_async(create_upload)(member, elsewhere, "shot.png", image_bytes())
    socket = await connect(member)
    error = await refused(socket, send([shot.pk]), sim)
    assert (error["code"], error["field"]) == ("not_found", "attachments")
    assert error["message"] == "shot.png was attached in another team: attach it again here."
    assert (await Upload.objects.aget(pk=shot.pk)).message_id is None


async def test_a_deleted_upload_is_not_found(connect, member, sim, upload):
    shot = await upload(member)
    deleted_id = shot.pk
    await shot.adelete()
    socket = await connect(member)
    assert (await refused(socket, send([deleted_id]), sim))["code"] == "not_found"


async def test_an_upload_already_sent_is_refused(connect, member, sim, upload):
    shot = await upload(member)
    socket = await connect(member)
    ids = await socket.send_message("First", attachments=[shot.pk])
    await answer_of(socket, ids)
    error = await socket.expect_error(
        {**send([shot.pk]), "conversation_id": ids["conversation_id"]}
    )
    assert error["error"]["code"] == "attachment_used"
    assert await Message.objects.acount() == 2


async def test_too_many_files_are_refused(connect, member, sim, settings, upload):
    settings.UPLOAD_MAX_FILES_PER_MESSAGE = 1
    shots = [await upload(member) for _ in range(2)]
    socket = await connect(member)
    error = await refused(socket, send([s.pk for s in shots]), sim)
    assert error["code"] == "too_many_files"
    assert error["message"] == "Attach at most 1 file to one message."
    assert not await Upload.objects.filter(message__isnull=False).aexists()


async def test_files_too_large_together_are_refused(connect, member, sim, settings, upload):
    shots = [await upload(member) for _ in range(2)]
    settings.UPLOAD_MAX_MESSAGE_BYTES = shots[0].size + 1
    socket = await connect(member)
    error = await refused(socket, send([s.pk for s in shots]), sim)
    assert error["code"] == "attachments_too_large"


@pytest.mark.parametrize(
    "attachments", ["12", [0], [True], [1.5], ["1"], {"id": 1}, [3, 3]], ids=str
)
async def test_malformed_attachments_are_refused(connect, member, sim, attachments):
    socket = await connect(member)
    error = await refused(socket, send(attachments), sim)
    assert (error["code"], error["field"]) == ("invalid_frame", "attachments")


async def test_a_document_too_large_for_the_model_says_so(connect, member, sim, settings, upload):
    # 125,000 tokens: under the 128,000 of the largest window (so the upload is taken), over
    # the 111,616 the model reads when 16,384 are kept for its answer.
    notes = await upload(member, "notes.txt", b"many words here " * 31_250)
    socket = await connect(member)
    error = await refused(socket, {**send([notes.pk]), "settings": {"max_tokens": 16384}}, sim)
    assert error["code"] == "document_too_large"
    assert "notes.txt" in error["message"]
