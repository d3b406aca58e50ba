"""Images on /v1/chat/completions, sent inline as data URLs as OpenAI's vision requests send
them: checked and cleaned as uploads are, then given to a model that sees images."""

import asyncio
import base64
import io
import json
import random
import threading

import openai
import pytest
from channels.db import database_sync_to_async
from django.core.files.storage import FileSystemStorage
from django.db import DatabaseError
from PIL import Image, PngImagePlugin

from chatapp.asgi import application
from chatapp.chat import openai_api
from chatapp.chat.models import Conversation
from chatapp.core.bodies import v1_body_limit
from chatapp.teams import actions as team_actions
from chatapp.teams.models import BudgetHold, TeamPolicy, TeamUsage
from chatapp.uploads.actions import limits as upload_limits
from chatapp.uploads.models import Upload
from chatapp.uploads.validation import check_image
from tests.openai_api.conftest import MODEL, raw, sdk
from tests.support.polling import await_for

pytestmark = pytest.mark.django_db(transaction=True)
SEES_IMAGES = "Llama-4-Scout-17B-16E-Instruct-FP8"


def png(width: int = 40, height: int = 30, comment: str = "") -> bytes:
    """A PNG; `comment` goes in a text chunk, which cleaning drops."""
    info = PngImagePlugin.PngInfo()
    if comment:
        info.add_text("Comment", comment)
    output = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(output, "PNG", pnginfo=info)
    return output.getvalue()


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def question(*urls: str, text: str = "What is in this picture?") -> list[dict]:
    parts = [{"type": "text", "text": text}] if text else []
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return [{"role": "user", "content": parts}]


def sent_images(sim) -> list[bytes]:
    """The images the last upstream request carried, decoded."""
    content = sim.requests[-1]["messages"][-1]["content"]
    urls = [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
    return [base64.b64decode(url.partition(",")[2]) for url in urls]


@pytest.fixture
async def key(sim, member, team, make_key):
    return await database_sync_to_async(make_key)(member, team)


async def test_an_image_reaches_the_model_cleaned(sim, key):
    messages = question(data_url(png(comment="GPS 48.85,2.35")))
    answer = await sdk(key).chat.completions.create(model=SEES_IMAGES, messages=messages)
    assert "1 image (40×30)" in answer.choices[0].message.content  # what the model was sent
    (sent,) = sent_images(sim)
    assert b"GPS" not in sent and Image.open(io.BytesIO(sent)).size == (40, 30)
    text_part = sim.requests[-1]["messages"][-1]["content"][0]
    assert text_part == {"type": "text", "text": "What is in this picture?"}
    # An image costs its estimate in the prompt the answer held against the budgets.
    usage = await database_sync_to_async(TeamUsage.objects.get)()
    assert usage.prompt_tokens == answer.usage.prompt_tokens


async def test_a_question_may_be_images_alone_and_earlier_turns_keep_theirs(sim, key):
    messages = [
        *question(data_url(png(10, 10)), text=""),
        {"role": "assistant", "content": "A red square."},
        *question(data_url(png(20, 10)), data_url(png(30, 10)), text=""),
    ]
    stream = await sdk(key).chat.completions.create(
        model=SEES_IMAGES, messages=messages, stream=True
    )
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
    assert "3 images (10×10, 20×10, 30×10)" in text
    first, _, last = sim.requests[-1]["messages"]
    assert [part["type"] for part in first["content"]] == ["image_url"]
    assert [part["type"] for part in last["content"]] == ["image_url", "image_url"]


async def test_a_large_photo_fits_where_other_bodies_do_not(sim, key):
    noise = Image.frombytes("RGB", (1200, 1000), random.Random(1).randbytes(1200 * 1000 * 3))
    output = io.BytesIO()
    noise.save(output, "PNG")
    assert len(output.getvalue()) > 3 * 1024**2  # over Django's 2.5 MB for other bodies
    messages = question(data_url(output.getvalue()))
    answer = await sdk(key).chat.completions.create(model=SEES_IMAGES, messages=messages)
    assert "1 image (1200×1000)" in answer.choices[0].message.content


async def test_a_body_over_the_limit_is_413(sim, key):
    padding = "x" * (v1_body_limit() + 1)
    async with raw(key) as http:
        response = await http.post(
            "/v1/chat/completions",
            content=b'{"messages": [{"role": "user", "content": "' + padding.encode() + b'"}]}',
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert sim.requests == []


@pytest.mark.parametrize(
    ("messages", "code", "param"),
    [
        (
            question("https://example.com/cat.png"),
            "unsupported_content",
            "messages[0].content[1].image_url",
        ),
        (
            question("data:image/png,rawbytes"),
            "invalid_request",
            "messages[0].content[1].image_url",
        ),
        (
            question("data:image/png;base64,@@@"),
            "invalid_request",
            "messages[0].content[1].image_url",
        ),
        (
            question(data_url(b"%PDF-1.7 not a picture")),
            "invalid_image",
            "messages[0].content[1].image_url",
        ),
        (question(data_url(png()[:60])), "invalid_image", "messages[0].content[1].image_url"),
        (question(data_url(b"")), "empty_file", "messages[0].content[1].image_url"),
        (question(*[data_url(png())] * 9), "too_many_images", "messages"),
        (
            [
                {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                *question(text="hi"),
            ],
            "unsupported_content",
            "messages[0].content",
        ),
    ],
)
async def test_images_it_cannot_take_are_400_and_nothing_goes_upstream(
    sim, key, messages, code, param
):
    async with raw(key) as http:
        response = await http.post(
            "/v1/chat/completions", json={"model": SEES_IMAGES, "messages": messages}
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert sim.requests == []
    assert not await database_sync_to_async(TeamUsage.objects.exists)()


async def test_a_model_that_sees_no_images_is_refused_them(sim, key):
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(key).chat.completions.create(model=MODEL, messages=question(data_url(png())))
    assert (refused.value.body["code"], refused.value.body["param"]) == (
        "model_cannot_see_images",
        "model",
    )
    assert sim.requests == []


async def test_a_saved_exchange_keeps_its_images_as_the_questions_attachments(
    sim, member, team, key, client
):
    messages = [
        *question(data_url(png(10, 10)), text="First"),
        {"role": "assistant", "content": "A red square."},
        *question(data_url(png(20, 10, comment="secret")), data_url(png(30, 10)), text=""),
    ]
    saved = sdk(key, **{"X-Save-Conversation": "1"})
    answer = await saved.chat.completions.create(model=SEES_IMAGES, messages=messages)
    conversation_id = answer.model_extra["conversation_id"]

    # The chat page's view of it: the questions with their images, as if attached there.
    def read():
        client.force_login(member)
        rows = client.get(f"/api/conversations/{conversation_id}/").json()["messages"]
        image = client.get(f"/api/uploads/{rows[2]['attachments'][0]['id']}/")
        return rows, b"".join(image.streaming_content)

    rows, image = await database_sync_to_async(read)()
    assert [(m["role"], m["content"]) for m in rows] == [
        ("user", "First"),
        ("assistant", "A red square."),
        ("user", ""),
        ("assistant", answer.choices[0].message.content),
    ]
    attached = [[(a["name"], a["width"]) for a in m.get("attachments") or []] for m in rows]
    assert attached == [[("image-1.png", 10)], [], [("image-1.png", 20), ("image-2.png", 30)], []]
    assert image.startswith(b"\x89PNG") and b"secret" not in image
    assert await database_sync_to_async(Upload.objects.filter(team=team, owner=member).count)() == 3


async def test_a_large_body_is_read_in_a_worker_thread(sim, key, monkeypatch):
    """The event loop relays every answer of the process: a body of images is parsed and its
    images decoded elsewhere, a plain question where it arrives."""
    readers: list[threading.Thread] = []
    real = openai_api.parse_body

    def parse_body(raw: bytes):
        readers.append(threading.current_thread())
        return real(raw)

    monkeypatch.setattr(openai_api, "parse_body", parse_body)
    loop_thread = threading.current_thread()  # the test's loop, serving the app in process
    big = png(comment="x" * 400_000)  # cleaning drops the comment: the request stays valid
    await sdk(key).chat.completions.create(model=SEES_IMAGES, messages=question(data_url(big)))
    await sdk(key).chat.completions.create(model=SEES_IMAGES, messages=question())
    assert readers[0] is not loop_thread
    assert readers[1] is loop_thread
    assert len(sim.requests) == 2


async def test_images_to_keep_must_fit_in_the_teams_storage(sim, key, settings):
    settings.UPLOAD_TEAM_QUOTA_BYTES = 100  # smaller than any PNG
    saved = sdk(key, **{"X-Save-Conversation": "1"})
    with pytest.raises(openai.BadRequestError) as refused:
        await saved.chat.completions.create(model=SEES_IMAGES, messages=question(data_url(png())))
    assert refused.value.body["code"] == "storage_quota_exceeded"
    assert sim.requests == []
    # Not kept, they take no room: the same question unsaved is answered.
    await sdk(key).chat.completions.create(model=SEES_IMAGES, messages=question(data_url(png())))


async def test_images_kept_after_the_answer_are_checked_against_the_quota_again(
    sim, key, owner, team, make_key, settings, caplog
):
    """Two saved requests each find room for their image when planned, the first still
    streaming as the second is answered and kept: the first's is then past the quota, so its
    exchange is not kept, though its answer was given and counted."""
    size = len(check_image("image", png(), upload_limits()).data)
    settings.UPLOAD_TEAM_QUOTA_BYTES = size + size // 2  # room for one image, not two
    body = {
        "model": SEES_IMAGES,
        "stream": True,
        "messages": question(data_url(png()), text="[sim:fault=stall_after after=3] Look"),
    }
    gone, received, sent = asyncio.Event(), [], []

    async def receive() -> dict:
        if not received:
            received.append(body)
            return {"type": "http.request", "body": json.dumps(body).encode()}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = {"authorization": f"Bearer {key}", "x-save-conversation": "1"}
    headers |= {"content-type": "application/json", "host": "testserver"}
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    first = asyncio.ensure_future(application(scope, receive, send))
    await await_for(lambda: sim.active_streams == 1, "the first answer to stream upstream")

    second_key = await database_sync_to_async(make_key)(owner, team)
    saved = sdk(second_key, **{"X-Save-Conversation": "1"})
    answer = await saved.chat.completions.create(
        model=SEES_IMAGES, messages=question(data_url(png()))
    )
    assert answer.model_extra["conversation_id"]
    gone.set()  # the first client leaves: its answer ends, is counted and would be kept
    await first

    kept = [upload.size async for upload in Upload.objects.filter(team=team)]
    assert sum(kept) <= settings.UPLOAD_TEAM_QUOTA_BYTES
    assert [c.pk async for c in Conversation.objects.all()] == [
        answer.model_extra["conversation_id"]
    ]
    assert await TeamUsage.objects.filter(team=team).acount() == 2  # both answers count
    assert sent[0]["status"] == 200
    assert "An API exchange was not kept as a conversation: Your team has used" in caplog.text


async def blocked_for_a_picture(sim, key, team, settings, messages) -> dict:
    """Under a team blocking flagged questions, the request is refused for its picture (S12)
    before anything goes upstream; the one message Llama Guard was shown."""
    settings.LLAMA_MAX_ATTEMPTS = 1
    await TeamPolicy.objects.aupdate_or_create(team=team, defaults={"safety_input": "block"})
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(key).chat.completions.create(model=SEES_IMAGES, messages=messages)
    assert refused.value.body["code"] == "safety_blocked"
    assert "S12" in refused.value.body["message"]
    assert sim.requests == []
    (screened,) = sim.moderations[-1]["messages"]
    return screened


async def test_llama_guard_is_shown_the_question_s_images(sim, key, member, team, settings):
    """The image is screened cleaned, as the model would see it, and a block stops it there."""
    messages = question(data_url(png(comment="GPS")), text="[sim:flag_image categories=S12] Hm?")
    screened = await blocked_for_a_picture(sim, key, team, settings, messages)
    url = screened["content"][1]["image_url"]["url"]
    assert b"GPS" not in base64.b64decode(url.partition(",")[2])


async def test_an_earlier_turns_picture_is_screened_too(sim, key, team, settings):
    """The client wrote the earlier turns too: their images go to Llama Guard with the rest."""
    earlier = question(data_url(png()), text="[sim:flag_image categories=S12] Look")
    messages = [
        *earlier,
        {"role": "assistant", "content": "A picture."},
        {"role": "user", "content": "And now?"},
    ]
    screened = await blocked_for_a_picture(sim, key, team, settings, messages)
    text, image = screened["content"]
    assert text["text"].split("\n\n") == [
        "[user] [sim:flag_image categories=S12] Look",
        "[assistant] A picture.",
        "[user] And now?",
    ]
    assert image["type"] == "image_url"


async def test_a_question_of_images_alone_is_screened_as_images(sim, key, team, settings):
    settings.LLAMA_MAX_ATTEMPTS = 1
    await TeamPolicy.objects.aupdate_or_create(team=team, defaults={"safety_input": "flag"})
    messages = question(data_url(png()), data_url(png(20, 10)), text="")
    await sdk(key).chat.completions.create(model=SEES_IMAGES, messages=messages)

    (screened,) = sim.moderations[-1]["messages"]
    assert [part["type"] for part in screened["content"]] == ["image_url", "image_url"]
    assert len(sim.requests) == 1


async def test_an_exchange_that_cannot_be_kept_still_counts_and_holds_nothing(
    sim, key, member, team, uploads_dir
):
    """Its images cannot be stored (the storage is not a directory): the answer was given,
    so its tokens count and its budget hold goes, though no conversation is kept."""
    await TeamPolicy.objects.aupdate_or_create(team=team, defaults={"monthly_token_budget": 10**6})
    uploads_dir.parent.mkdir(parents=True, exist_ok=True)
    uploads_dir.write_bytes(b"")
    saved = sdk(key, **{"X-Save-Conversation": "1"})
    answer = await saved.chat.completions.create(
        model=SEES_IMAGES, messages=question(data_url(png()))
    )
    assert answer.choices[0].message.content
    usage = await TeamUsage.objects.aget(team=team, user=member)
    assert (usage.requests, usage.prompt_tokens) == (1, answer.usage.prompt_tokens)
    assert not await BudgetHold.objects.aexists()
    assert not await Conversation.objects.aexists()


class FullAfter(FileSystemStorage):
    """A storage that takes `room` files, then is full (OSError), as a disk fills."""

    def __init__(self, location, room: int):
        super().__init__(location=location)
        self.room = room

    def _save(self, name, content):
        if self.room <= 0:
            raise OSError(28, "No space left on device")
        self.room -= 1
        return super()._save(name, content)


def stored_files(location) -> list:
    return [path for path in location.rglob("*") if path.is_file()] if location.exists() else []


async def test_images_of_an_exchange_that_cannot_be_kept_leave_no_file_behind(
    sim, key, member, team, uploads_dir, monkeypatch
):
    """The first image is stored, the second finds the storage full: the conversation is not
    kept, so neither is the first image's file, which no row would name (no sweep finds it)."""
    monkeypatch.setattr(Upload._meta.get_field("file"), "storage", FullAfter(uploads_dir, 1))
    saved = sdk(key, **{"X-Save-Conversation": "1"})
    answer = await saved.chat.completions.create(
        model=SEES_IMAGES, messages=question(data_url(png(10, 10)), data_url(png(20, 10)))
    )
    assert answer.choices[0].message.content and "conversation_id" not in answer.model_extra
    assert not await Conversation.objects.aexists()
    assert not await Upload.objects.aexists()
    assert stored_files(uploads_dir) == []


async def test_images_of_an_exchange_whose_usage_cannot_be_recorded_leave_no_file_behind(
    sim, key, member, team, uploads_dir, monkeypatch
):
    """Counting the answer fails after its conversation was kept (the database went away, say):
    the one transaction keeping both rolls back, and the images' files go with it."""

    def fails(*args, **kwargs):
        raise DatabaseError("the database went away")

    monkeypatch.setattr(team_actions, "record_usage", fails)
    saved = sdk(key, **{"X-Save-Conversation": "1"})
    await saved.chat.completions.create(model=SEES_IMAGES, messages=question(data_url(png())))
    assert not await Conversation.objects.aexists()
    assert not await Upload.objects.aexists()
    assert stored_files(uploads_dir) == []
