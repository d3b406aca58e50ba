"""Stop, subscribe mid-stream, two tabs, upstream failures."""

import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from chatapp.chat.generation import CHECKPOINT_SECONDS
from chatapp.chat.models import Conversation, Message
from chatapp.teams.actions import remove_member
from chatapp.teams.models import Membership, Role, Team, TeamUsage
from llama_simulator.models import count_prompt_tokens
from tests.support.polling import await_for

from .conftest import joined_text

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = "[sim:long tokens=400] [sim:pace tps=40]"


async def test_a_stopped_answer_counts_its_prompt_and_the_tokens_it_sent(
    connect, member, team, sim
):
    """The provider bills a long question stopped at its first token: so does the budget."""
    socket = await connect(member)
    ids = await socket.send_message(f"{'Read this closely. ' * 500} {SLOW}")
    await socket.until_type("message.delta", ids["message_id"])
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    prompt = count_prompt_tokens(sim.requests[-1]["messages"])
    assert prompt > 2000
    assert done["usage"]["prompt_tokens"] == prompt and done["usage"]["completion_tokens"] > 0
    row = await TeamUsage.objects.aget(team=team, user=member)
    assert (row.prompt_tokens, row.completion_tokens) == (
        prompt,
        done["usage"]["completion_tokens"],
    )


async def test_an_answer_whose_chat_is_deleted_mid_stream_counts_what_it_spent(
    connect, member, team, sim
):
    """Another tab deletes the conversation (or the page leaves a temporary chat): the answer
    stops, and its tokens count against the budgets as a stopped answer's do."""
    socket = await connect(member)
    ids = await socket.send_message(f"Count slowly {SLOW}", temporary=True)
    await socket.until_type("message.delta", ids["message_id"])
    client = Client()
    await database_sync_to_async(client.force_login)(member)
    url = f"/api/conversations/{ids['conversation_id']}/"
    assert (await database_sync_to_async(client.delete)(url)).status_code == 204
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "stopped" and done["usage"]["completion_tokens"] > 0
    row = await TeamUsage.objects.aget(team=team, user=member)
    assert (row.prompt_tokens, row.completion_tokens) == (
        done["usage"]["prompt_tokens"],
        done["usage"]["completion_tokens"],
    )


async def test_stop_keeps_the_partial_answer(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message(f"Count slowly {SLOW}")
    message_id = ids["message_id"]
    await socket.until_type("message.delta", message_id)
    await socket.send({"type": "chat.stop", "message_id": message_id})
    frames = await socket.until_type("message.done", message_id)
    assert frames[-1]["status"] == "stopped"
    assert "message.error" not in [f["type"] for f in frames]  # one's own stop needs no reason
    shown = joined_text(socket.received, message_id)
    message = await Message.objects.aget(pk=message_id)
    assert message.status == "stopped" and message.error_code == ""
    assert message.content == shown
    assert 0 < message.seq < 400
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close")


async def test_an_answer_stopped_before_any_text_is_replaced_by_its_regenerate(
    connect, member, sim
):
    """Stopped before its first token, it has nothing to show: a regenerate takes its place,
    as it does a failure's, rather than keeping an empty version beside the new answer."""
    socket = await connect(member)
    ids = await socket.send_message("Think first [sim:pace ttft=30]")
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "stopped"
    await socket.send({"type": "chat.regenerate", "message_id": ids["message_id"]})
    created = (await socket.until_type("message.created"))[-1]
    assert created["replaces"] == ids["message_id"]
    assert created["message"]["sibling_ids"] == [created["message"]["id"]]
    assert not await Message.objects.filter(pk=ids["message_id"]).aexists()


async def test_an_answer_stopped_after_text_stays_a_version_beside_its_regenerate(
    connect, member, sim
):
    socket = await connect(member)
    ids = await socket.send_message(f"Count slowly {SLOW}")
    await socket.until_type("message.delta", ids["message_id"])
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    await socket.until_type("message.done", ids["message_id"])
    await socket.send({"type": "chat.regenerate", "message_id": ids["message_id"]})
    created = (await socket.until_type("message.created"))[-1]
    assert created["message"]["sibling_ids"] == [ids["message_id"], created["message"]["id"]]


async def test_subscribe_mid_stream_has_no_gap_and_no_duplicate(connect, member, sim):
    first = await connect(member)
    ids = await first.send_message(f"Long one {SLOW}")
    message_id = ids["message_id"]
    await first.receive_until(lambda f: f["type"] == "message.delta" and f["seq"] >= 5)

    second = await connect(member)
    await second.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = await second.receive()
    assert state["type"] == "conversation.state"
    streaming = [m for m in state["messages"] if m["id"] == message_id][0]
    assert streaming["status"] == "streaming"
    assert streaming["seq"] >= 5
    await first.send({"type": "chat.stop", "message_id": message_id})
    rest = await second.until_type("message.done", message_id)
    deltas = [f for f in rest if f["type"] == "message.delta"]
    assert [f["seq"] for f in deltas] == list(
        range(streaming["seq"] + 1, streaming["seq"] + 1 + len(deltas))
    )
    message = await Message.objects.aget(pk=message_id)
    assert streaming["content"] + joined_text(rest, message_id) == message.content
    await first.until_type("message.done", message_id)
    assert joined_text(first.received, message_id) == message.content


async def test_two_tabs_see_the_same_stream(connect, member, sim):
    first = await connect(member)
    ids = await first.send_message("Start")
    await first.until_type("message.done", ids["message_id"])
    second = await connect(member)
    await second.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = await second.receive()
    assert [m["status"] for m in state["messages"]] == ["complete", "complete"]

    await first.send(
        {
            "type": "chat.send",
            "request_id": "r2",
            "conversation_id": ids["conversation_id"],
            "content": "More [sim:long tokens=80] [sim:pace tps=40]",  # two seconds of deltas
        }
    )
    created = await second.until_type("message.created")
    created += await second.until_type("message.created")
    assert [f["message"]["role"] for f in created if f["type"] == "message.created"] == [
        "user",
        "assistant",
    ]
    message_id = created[-1]["message"]["id"]
    theirs = await second.until_type("message.done", message_id)
    mine = await first.until_type("message.done", message_id)
    stored = await Message.objects.aget(pk=message_id)
    assert joined_text(theirs, message_id) == joined_text(mine, message_id) == stored.content


async def test_subscribe_uses_the_stored_row_when_no_process_runs_the_answer(connect, member, team):
    conversation = await Conversation.objects.acreate(team=team, owner=member, model="m")
    question = await Message.objects.acreate(conversation=conversation, role="user", content="Q")
    orphan = await Message.objects.acreate(
        conversation=conversation,
        role="assistant",
        content="Half an ans",
        seq=3,
        status="streaming",
        heartbeat_at=timezone.now(),
    )
    socket = await connect(member)
    await socket.send({"type": "chat.subscribe", "conversation_id": conversation.pk})
    state = await socket.receive()
    assert state["type"] == "conversation.state"
    assert state["messages"][-1] == {
        "id": orphan.pk,
        "parent_id": question.pk,
        "sibling_ids": [orphan.pk],
        "role": "assistant",
        "status": "streaming",
        "content": "Half an ans",
        "seq": 3,
    }


async def test_checkpoints_are_about_once_a_second_not_per_token(connect, member, sim, orm_queries):
    socket = await connect(member)
    started = time.monotonic()
    ids = await socket.send_message("[sim:long tokens=250] [sim:pace tps=100]")
    frames = await socket.until_type("message.done", ids["message_id"])
    # However slow the machine, the answer lived no longer than this test waited for it.
    lifetime = time.monotonic() - started
    message = await Message.objects.aget(pk=ids["message_id"])
    assert message.completion_tokens == 250
    writes = orm_queries.updates_of("chat_message")
    # The simulator paces 250 tokens at 100 a second, so the answer streams for 2.5 s at least:
    # at least one checkpoint before the final write, and never more than one a second.
    assert 2 <= len(writes) <= lifetime / CHECKPOINT_SECONDS + 2
    assert len([f for f in frames if f["type"] == "message.delta"]) > len(writes)
    assert not [s for s in orm_queries.statements if s.startswith('INSERT INTO "chat_message"')][2:]


async def test_deleting_a_conversation_stops_its_answer(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message(f"Doomed {SLOW}")
    await socket.until_type("message.delta", ids["message_id"])

    def delete() -> int:
        client = Client()
        client.force_login(member)
        return client.delete(f"/api/conversations/{ids['conversation_id']}/").status_code

    assert await database_sync_to_async(delete)() == 204
    done = await socket.until_type("message.done", ids["message_id"])
    assert done[-1]["status"] == "stopped"
    assert not await Message.objects.filter(pk=ids["message_id"]).aexists()
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close")


async def test_deleting_a_team_stops_the_answers_of_its_conversations(connect, member, team, sim):
    socket = await connect(member)
    ids = await socket.send_message(f"Doomed {SLOW}")
    await socket.until_type("message.delta", ids["message_id"])
    await Team.objects.filter(pk=team.pk).adelete()  # a site admin deletes the team
    done = await socket.until_type("message.done", ids["message_id"])
    assert done[-1]["status"] == "stopped"
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close")


async def test_leaving_the_team_stops_ones_answers_in_its_conversations(
    connect, member, owner, team, sim
):
    """Removed from a team (or leaving it), one's answers there stop and are kept, as no new
    question may be asked there any more; answers in one's other teams go on."""
    elsewhere = await Team.objects.acreate(name="Elsewhere")
    await Membership.objects.acreate(team=elsewhere, user=member, role=Role.MEMBER)
    socket, other_tab = await connect(member), await connect(member)
    here = await socket.send_message(f"Doomed {SLOW}", team_id=team.pk)
    there = await other_tab.send_message(f"Kept {SLOW}", team_id=elsewhere.pk)
    await socket.until_type("message.delta", here["message_id"])

    def remove() -> None:
        remove_member(
            Membership.objects.get(team=team, user=owner),
            Membership.objects.get(team=team, user=member),
        )

    await database_sync_to_async(remove)()
    done = await socket.until_type("message.done", here["message_id"])
    assert done[-1]["status"] == "stopped"
    said = [f["error"] for f in done if f["type"] == "message.error"]  # why, before the end
    assert [e["code"] for e in said] == ["forbidden"] and said[0]["retryable"] is False
    assert "no longer a member of this team" in said[0]["message"]
    stopped = await Message.objects.aget(pk=here["message_id"])
    assert stopped.status == "stopped" and stopped.content  # what was shown is kept
    assert (stopped.error_code, stopped.error_message) == ("forbidden", said[0]["message"])
    await other_tab.until_type("message.delta", there["message_id"])  # still streaming
    assert await Message.objects.filter(pk=there["message_id"], status="streaming").aexists()


def before_an_answer_joins_its_group(monkeypatch, act) -> None:
    """Run `act` (in the database thread) once an answer's rows are committed and before its
    generation has joined the group its stops are sent to."""
    layer = get_channel_layer()
    join = layer.group_add

    async def act_first(group: str, channel: str) -> None:
        if group.startswith("chat.generation."):
            await database_sync_to_async(act)()  # its stop goes out as it commits
        await join(group, channel)

    monkeypatch.setattr(layer, "group_add", act_first)


async def test_a_removal_before_the_answer_joins_its_group_still_stops_it(
    connect, member, owner, team, sim, monkeypatch
):
    before_an_answer_joins_its_group(
        monkeypatch,
        lambda: remove_member(
            Membership.objects.get(team=team, user=owner),
            Membership.objects.get(team=team, user=member),
        ),
    )
    socket = await connect(member)
    ids = await socket.send_message(f"Doomed {SLOW}", team_id=team.pk)
    done = await socket.until_type("message.done", ids["message_id"])
    assert done[-1]["status"] == "stopped"
    said = [f["error"]["code"] for f in done if f["type"] == "message.error"]
    assert said == ["forbidden"]
    stopped = await Message.objects.aget(pk=ids["message_id"])
    assert (stopped.status, stopped.error_code) == ("stopped", "forbidden")
    assert stopped.seq < 400
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close")


async def test_a_deletion_before_the_answer_joins_its_group_still_stops_it(
    connect, member, sim, monkeypatch
):
    before_an_answer_joins_its_group(monkeypatch, lambda: Conversation.objects.all().delete())
    socket = await connect(member)
    ids = await socket.send_message(f"Doomed {SLOW}")
    done = await socket.until_type("message.done", ids["message_id"])
    assert done[-1]["status"] == "stopped"
    assert not await Message.objects.filter(pk=ids["message_id"]).aexists()
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close")


async def test_a_deactivation_before_the_answer_joins_its_group_still_stops_it(
    connect, member, sim, monkeypatch
):
    """The stop a deactivation sends as it commits reaches no one while the answer's
    generation (in this or another process) has not joined its group yet."""

    def deactivate() -> None:
        member.is_active = False
        member.save()

    before_an_answer_joins_its_group(monkeypatch, deactivate)
    socket = await connect(member)
    ids = await socket.send_message(f"Doomed {SLOW}")
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close", 3)
    stopped = await Message.objects.aget(pk=ids["message_id"])
    assert stopped.status == "stopped" and stopped.seq < 400


async def test_deleting_a_user_stops_their_answers(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message(f"Doomed {SLOW}")
    await socket.until_type("message.delta", ids["message_id"])
    await get_user_model().objects.filter(pk=member.pk).adelete()
    # At once, not once the answer (10 s) ends on its own.
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close", 3)


async def test_deactivating_a_user_stops_their_answers(connect, member, sim):
    """A site admin shuts an account out: its answers (and the tools they would call) stop
    with its sessions, rather than go on spending the team's tokens to their end."""
    socket = await connect(member)
    ids = await socket.send_message(f"Doomed {SLOW}")
    await socket.until_type("message.delta", ids["message_id"])
    member.is_active = False
    await member.asave()
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close", 3)
    stopped = await Message.objects.aget(pk=ids["message_id"])
    assert stopped.status == "stopped" and stopped.seq < 400


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="about the Redis channel layer")
async def test_an_idle_socket_outlives_the_redis_read_timeout(connect, member, sim):
    socket = await connect(member)
    assert await socket.communicator.receive_nothing(timeout=6)  # redis-py 8 default: 5 s
    ids = await socket.send_message("Still there?")
    done = await socket.until_type("message.done", ids["message_id"])
    assert done[-1]["status"] == "complete"


async def test_closing_the_tab_does_not_stop_the_answer(connect, member, sim):
    first = await connect(member)
    ids = await first.send_message("[sim:long tokens=120] [sim:pace tps=80]")
    message_id = ids["message_id"]
    await first.until_type("message.delta", message_id)
    await first.communicator.disconnect()

    reloaded = await connect(member)
    await reloaded.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = await reloaded.receive()
    answer = state["messages"][-1]
    rest = await reloaded.until_type("message.done", message_id)
    assert rest[-1]["status"] == "complete"
    stored = await Message.objects.aget(pk=message_id)
    assert stored.completion_tokens == 120
    if answer["status"] == "streaming":
        assert answer["content"] + joined_text(rest, message_id) == stored.content
    else:  # it finished before the subscribe arrived
        assert answer["content"] == stored.content


async def test_an_answer_ending_while_a_subscribe_builds_its_state_is_listed_as_it_ended(
    connect, member, sim, monkeypatch
):
    """protocol.md: in conversation.state, answers carry what ended them (model, usage,
    finish_reason, error) as the conversation API lists them: also one that ended between the
    state's read and its snapshot, whose stored row the state takes."""
    from chatapp.chat import consumers
    from chatapp.chat.generation import RUNNING

    socket = await connect(member)
    ids = await socket.send_message(f"Count slowly {SLOW}")
    await socket.until_type("message.delta", ids["message_id"])

    async def stopped_first(message_id, reply_channel):  # the answer ends before it is asked
        generation = RUNNING[message_id]
        generation.stop()
        await generation.wait()

    monkeypatch.setattr(consumers.replies, "request_snapshot", stopped_first)
    reloaded = await connect(member)
    await reloaded.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = (await reloaded.until_type("conversation.state"))[-1]["messages"][-1]
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert (state["status"], state["seq"]) == ("stopped", answer.seq)
    assert state["usage"] == {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
    }
    assert (state["model"], state.get("finish_reason")) == (
        answer.model,
        answer.finish_reason or None,
    )


async def test_an_answer_ending_before_a_subscribe_reads_its_state_is_not_streamed_again(
    connect, member, sim, monkeypatch
):
    """Deltas held while the subscribe joined, of an answer that then ended before the state
    was read: the state lists it whole, so none of them follows it (no duplicate text)."""
    from chatapp.chat import consumers
    from chatapp.chat.generation import RUNNING

    socket = await connect(member)
    ids = await socket.send_message(f"Count slowly {SLOW}")
    await socket.until_type("message.delta", ids["message_id"])
    generation = RUNNING[ids["message_id"]]
    follow = consumers.ChatConsumer.follow

    async def follow_then_end(consumer, conversation_id):  # held: deltas, then the end
        await follow(consumer, conversation_id)
        seq = generation.seq
        await await_for(lambda: generation.seq >= seq + 2, "two more deltas")
        generation.stop()
        await generation.wait()

    monkeypatch.setattr(consumers.ChatConsumer, "follow", follow_then_end)
    reloaded = await connect(member)
    await reloaded.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    frames = await reloaded.until_type("message.done", ids["message_id"])
    state = next(f for f in frames if f["type"] == "conversation.state")["messages"][-1]
    stored = await Message.objects.aget(pk=ids["message_id"])
    assert (state["status"], state["content"], state["seq"]) == (
        "stopped",
        stored.content,
        stored.seq,
    )
    after = frames[frames.index(next(f for f in frames if f["type"] == "conversation.state")) :]
    assert [f for f in after if f["type"] == "message.delta"] == []
