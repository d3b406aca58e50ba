"""The JSON API shows attachments on user messages and which models see images."""

import pytest

from chatapp.chat.models import Conversation, Message
from chatapp.uploads.models import Upload

pytestmark = pytest.mark.django_db


def test_conversation_lists_each_questions_files(member_client, member, team, make_upload):
    conversation = Conversation.objects.create(team=team, owner=member, model="m")
    question = Message.objects.create(conversation=conversation, role="user", content="see")
    Message.objects.create(conversation=conversation, role="assistant", content="a cat")
    shot, notes = make_upload(member), make_upload(member, "notes.md", b"# notes")
    Upload.objects.filter(pk__in=[shot.pk, notes.pk]).update(message=question)

    messages = member_client.get(f"/api/conversations/{conversation.pk}/").json()["messages"]
    asked, answered = messages
    assert [(a["id"], a["kind"], a["name"]) for a in asked["attachments"]] == [
        (shot.pk, "image", "photo.png"),
        (notes.pk, "document", "notes.md"),
    ]
    assert asked["attachments"][0]["width"] == 64
    assert answered["attachments"] is None


def test_models_say_which_see_images(member_client, settings):
    models = {m["id"]: m["images"] for m in member_client.get("/api/models/").json()["models"]}
    assert models["Llama-4-Scout-17B-16E-Instruct-FP8"] is True
    assert models["Llama-3.3-70B-Instruct"] is False
    settings.LLAMA_IMAGE_MODELS = ["Llama-3.3-70B-Instruct"]
    models = {m["id"]: m["images"] for m in member_client.get("/api/models/").json()["models"]}
    assert models["Llama-3.3-70B-Instruct"] is True
    assert models["Llama-4-Scout-17B-16E-Instruct-FP8"] is False
