"""ConversationFeed: what a socket follows and which events reach it, without Channels."""

from chatapp.chat import events
from chatapp.chat.feed import ConversationFeed


def created(conversation_id: int, message_id: int) -> dict:
    message = {
        "id": message_id,
        "conversation_id": conversation_id,
        "role": "assistant",
        "content": "",
        "status": "streaming",
    }
    return events.message_created("r1", message)


def delta(conversation_id: int, message_id: int, seq: int) -> dict:
    return events.message_delta(conversation_id, message_id, seq, f"t{seq}")


def state_message(message_id: int, status: str, seq: int) -> dict:
    return {"id": message_id, "role": "assistant", "status": status, "content": "", "seq": seq}


def test_follow_returns_the_conversation_to_leave():
    feed = ConversationFeed()
    assert feed.follow(1) is None
    assert feed.follow(1) is None  # already there: nothing to leave
    assert feed.follow(2) == 1
    assert feed.following == 2


def test_only_the_followed_conversations_events_pass():
    feed = ConversationFeed()
    feed.follow(1)
    assert feed.receive(delta(1, 10, 1)) == delta(1, 10, 1)
    assert feed.receive(delta(2, 20, 1)) is None


def test_events_are_held_during_a_subscribe_then_released_in_order():
    feed = ConversationFeed()
    feed.follow(1)
    feed.hold(1)
    for seq in (1, 2, 3):
        assert feed.receive(delta(1, 10, seq)) is None
    streaming = [state_message(10, "streaming", 2)]  # the snapshot holds deltas 1..2
    feed.state_ready(1, streaming, streaming)
    assert feed.receive(delta(1, 10, 4)) is None  # still queued behind the held ones
    released = []
    while (event := feed.next_held(1)) is not None:
        released.append(event["seq"])
    assert released == [3, 4]
    assert not feed.is_holding(1)
    assert feed.receive(delta(1, 10, 5)) == delta(1, 10, 5)


def test_deltas_at_or_under_the_seq_floor_never_pass_again():
    feed = ConversationFeed()
    feed.follow(1)
    feed.hold(1)
    streaming = [state_message(10, "streaming", 7)]
    feed.state_ready(1, streaming, streaming)
    assert feed.next_held(1) is None
    assert feed.receive(delta(1, 10, 7)) is None
    assert feed.receive(delta(1, 10, 8)) is not None


def test_message_created_for_a_message_in_the_state_is_dropped():
    feed = ConversationFeed()
    feed.follow(1)
    feed.hold(1)
    feed.receive(created(1, 10))
    feed.receive(created(1, 11))
    feed.state_ready(1, [state_message(10, "complete", 3)], [])
    assert feed.next_held(1)["message"]["id"] == 11
    assert feed.next_held(1) is None


def test_following_another_conversation_drops_what_was_held():
    feed = ConversationFeed()
    feed.follow(1)
    feed.hold(1)
    feed.receive(delta(1, 10, 1))
    assert feed.follow(2) == 1
    assert not feed.is_holding(1)
    assert feed.receive(delta(1, 10, 2)) is None


def test_stop_holding_discards_the_held_events():
    feed = ConversationFeed()
    feed.follow(1)
    feed.hold(1)
    feed.receive(delta(1, 10, 1))
    feed.stop_holding(1)
    assert feed.next_held(1) is None
    assert feed.receive(delta(1, 10, 2)) == delta(1, 10, 2)


async def test_a_snapshot_resolves_its_waiter():
    feed = ConversationFeed()
    waiters = feed.expect_snapshots([10, 11])
    snapshot = {"type": "generation.snapshot", "message_id": 10, "content": "ab", "seq": 2}
    feed.snapshot_arrived(snapshot)
    assert waiters[10].result() == snapshot
    assert not waiters[11].done()
    feed.forget_snapshots([10, 11])
    feed.snapshot_arrived({**snapshot, "message_id": 11})  # too late: nobody waits
    assert not waiters[11].done()


async def test_an_answer_ending_while_held_sends_its_waiter_to_the_database():
    feed = ConversationFeed()
    feed.follow(1)
    feed.hold(1)
    waiters = feed.expect_snapshots([10])
    done = events.message_done(1, 10, status="complete", model="m")
    assert feed.receive(done) is None
    assert waiters[10].done() and waiters[10].result() is None


def test_an_answer_that_ended_leaves_nothing_behind_in_a_long_lived_socket():
    """A tab open for days subscribes mid-answer again and again: each answer's seq floor
    goes once it ends, or the socket's memory grows by one per answer it ever resumed."""
    feed = ConversationFeed()
    feed.follow(1)
    for message_id in range(10, 20):
        feed.hold(1)
        streaming = [state_message(message_id, "streaming", 2)]
        feed.state_ready(1, streaming, streaming)
        assert feed.next_held(1) is None
        assert feed.receive(delta(1, message_id, 3)) is not None
        done = events.message_done(1, message_id, status="complete", model="m")
        assert feed.receive(done) == done
    assert feed._seq_floor == {}


def test_answers_left_behind_streaming_leave_nothing_behind_in_a_long_lived_socket():
    """The tab goes to another conversation while the answer it resumed still streams: its
    message.done never reaches the socket, so its seq floor goes as the socket leaves."""
    feed = ConversationFeed()
    for conversation_id in range(1, 11):
        feed.follow(conversation_id)
        feed.hold(conversation_id)
        streaming = [state_message(conversation_id * 10, "streaming", 2)]
        feed.state_ready(conversation_id, streaming, streaming)
        assert feed.next_held(conversation_id) is None
    feed.follow(11)
    done = events.message_done(10, 100, status="complete", model="m")
    assert feed.receive(done) is None
    assert feed._seq_floor == {}
