"""Checkpoints: one statement a second for all the answers a process streams."""

import time

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from chatapp.chat.actions.replies import Checkpoint, checkpoint_replies
from chatapp.chat.checkpoints import CHECKPOINT_SECONDS
from chatapp.chat.models import Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)

PACED = "[sim:long tokens=250] [sim:pace tps=100]"


async def test_answers_streaming_together_share_one_checkpoint_statement(
    connect, member, sim, orm_queries
):
    sockets = [await connect(member) for _ in range(3)]
    started = time.monotonic()
    answers = [await s.send_message(f"Answer {i} {PACED}") for i, s in enumerate(sockets)]
    for socket, ids in zip(sockets, answers, strict=True):
        await socket.until_type("message.done", ids["message_id"])
    lifetime = time.monotonic() - started
    checkpoints = [rows for _, rows in orm_queries.updates_of("chat_message") if rows is not None]
    # Each streams for 2.5 s at least: several ticks, each one statement however many answers.
    assert 2 <= len(checkpoints) <= lifetime / CHECKPOINT_SECONDS + 1
    # One row of parameters per answer: some tick wrote all three at once.
    assert max(checkpoints) == len(answers)
    for ids in answers:
        message = await Message.objects.aget(pk=ids["message_id"])
        assert message.status == "complete" and message.seq > 0


def make_answer(conversation: Conversation, status: str, content: str) -> Message:
    return Message.objects.create(
        conversation=conversation, role="assistant", status=status, content=content, seq=1
    )


async def test_a_checkpoint_leaves_answers_that_ended_as_their_final_write_made_them(member, team):
    def write_and_read() -> list[tuple[str, str, int]]:
        conversation = Conversation.objects.create(team=team, owner=member, model="m")
        streaming = make_answer(conversation, "streaming", "Hal")
        ended = make_answer(conversation, "complete", "The whole answer.")
        checkpoint_replies(
            [Checkpoint(streaming.pk, "Half an answer", 4), Checkpoint(ended.pk, "The wh", 2)]
        )
        rows = Message.objects.filter(pk__in=[streaming.pk, ended.pk]).order_by("pk")
        return list(rows.values_list("status", "content", "seq"))

    assert await database_sync_to_async(write_and_read)() == [
        ("streaming", "Half an answer", 4),
        ("complete", "The whole answer.", 1),
    ]


async def test_a_checkpoint_of_several_answers_is_one_transaction(member, team):
    """In autocommit every row of an executemany commits on its own: one commit for all."""
    seen: list[bool] = []

    def watch(execute, sql, params, many, context):
        if many:
            seen.append(connection.in_atomic_block)
        return execute(sql, params, many, context)

    def write() -> None:
        conversation = Conversation.objects.create(team=team, owner=member, model="m")
        answers = [make_answer(conversation, "streaming", "") for _ in range(3)]
        with connection.execute_wrapper(watch):
            checkpoint_replies([Checkpoint(a.pk, "So far", 2) for a in answers])

    await database_sync_to_async(write)()
    assert seen == [True]
