"""An answer's start: admitted, counted and written in one trip to the database thread, and
only then sent upstream."""

import asyncio
import threading
from functools import partial

import pytest
from channels.db import database_sync_to_async
from django.db import DatabaseError

from chatapp.chat import generation
from chatapp.chat.actions import replies
from chatapp.chat.errors import ChatError
from chatapp.chat.models import Conversation, Message, MessageStatus
from chatapp.chat.requests import SendRequest
from chatapp.teams.models import RecentRequest, TeamPolicy
from tests.support.polling import await_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_refusal_after_planning_writes_nothing_and_sends_nothing(
    connect, member, sim, settings
):
    """An unsaved API answer counts only in the process: the chat page's send is refused by
    that count, before any row is written or anything goes upstream."""
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 1
    generation.LIVE_PER_USER[member.pk] += 1  # as /v1/chat/completions counts one
    try:
        socket = await connect(member)
        reply = await socket.expect_error({"type": "chat.send", "content": "Hello"})
    finally:
        generation.release(member.pk)
    assert reply["error"]["code"] == "rate_limited"
    assert await Message.objects.acount() == 0
    assert sim.requests == []
    assert member.pk not in generation.LIVE_PER_USER


async def test_a_start_abandoned_during_its_trip_gives_its_count_back(member, team, sim):
    """The socket went away while the rows were being written: the count comes back, and the
    rows stay streaming for the reaper, as after a server that stopped."""
    entered, go_on = threading.Event(), threading.Event()

    def admission():
        entered.set()
        assert go_on.wait(60)
        return replies.admit_send(member, None, SendRequest(content="Hello"), "r1")

    start = asyncio.create_task(generation.start_generation(admission))
    assert await asyncio.to_thread(entered.wait, 60)
    start.cancel()
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await start
    answer = await await_for(
        lambda: Message.objects.filter(role="assistant").afirst(), "the trip's rows"
    )
    assert answer.status == MessageStatus.STREAMING
    await await_for(lambda: member.pk not in generation.LIVE_PER_USER, "the count given back")
    assert sim.requests == []


async def test_rows_that_cannot_be_written_drop_the_answer_and_give_the_count_back(
    member, team, sim, monkeypatch
):
    def disk_full(*args, **kwargs):
        raise DatabaseError("database or disk is full")

    monkeypatch.setattr(Message, "save", disk_full)
    admission = partial(replies.admit_send, member, None, SendRequest(content="Hello"), "r1")
    with pytest.raises(DatabaseError):
        await generation.start_generation(admission)
    assert member.pk not in generation.LIVE_PER_USER
    assert generation.RUNNING == {}
    assert await Message.objects.acount() == 0


async def test_a_send_refused_by_the_per_person_cap_counts_nothing_against_the_rate_limit(
    connect, member, team, sim, settings
):
    """The answers streaming are read under the rows' lock, before the team's rate limit counts
    the request: an answer streaming in another process refuses this one, which is not counted."""
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 1
    await TeamPolicy.objects.acreate(team=team, rate_limit_per_minute=5)
    elsewhere = await Conversation.objects.acreate(team=team, owner=member)
    await Message.objects.acreate(
        conversation=elsewhere, role="assistant", status=MessageStatus.STREAMING
    )
    socket = await connect(member)
    reply = await socket.expect_error({"type": "chat.send", "content": "Hello"})
    assert reply["error"]["code"] == "rate_limited"
    assert "1 answer streaming" in reply["error"]["message"]
    assert not await RecentRequest.objects.aexists()
    assert await Message.objects.acount() == 1
    assert sim.requests == []
    assert member.pk not in generation.LIVE_PER_USER


async def test_an_answer_counts_once_while_its_generation_is_being_attached(member, team, settings):
    """The next start can run in the database thread before the event loop has attached the
    answer before it: that answer is counted once, in this process, not again by its row."""
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 2
    handed: list = []

    @database_sync_to_async
    def start(number: int):
        request = SendRequest(content=f"Hello {number}")
        admission = partial(replies.admit_send, member, None, request, f"r{number}")
        return generation.begin_reply(admission, handed.append)

    exchanges = []
    try:
        exchanges.append(await start(1))
        exchanges.append(await start(2))  # the first is not attached: still one answer
        with pytest.raises(ChatError, match="2 answers streaming"):
            await start(3)
    finally:
        for plan in handed:
            generation.release(plan.user.pk)
        generation.ATTACHING.difference_update(e.assistant_id for e in exchanges)
    assert len(handed) == 2
