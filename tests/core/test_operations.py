"""The operator commands docs/operations.md documents, as documented."""

import io
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

from chatapp.chat.models import Conversation, Message


def streaming(conversation, heartbeat_age: timedelta, text: str) -> Message:
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=text,
        status="streaming",
        seq=3,
        heartbeat_at=timezone.now() - heartbeat_age,
    )


def test_reap_generations_reports_counts_and_keeps_the_text(team, owner):
    conversation = Conversation.objects.create(
        team=team, owner=owner, model="Llama-3.3-8B-Instruct"
    )
    dead = streaming(conversation, timedelta(minutes=10), "half an ans")
    alive = streaming(conversation, timedelta(seconds=1), "still going")
    out = io.StringIO()

    call_command("reap_generations", stdout=out)

    assert out.getvalue().strip() == "Checked 1 stale streaming answers; marked 1 interrupted."
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert (dead.status, dead.content) == ("interrupted", "half an ans")
    assert alive.status == "streaming"
