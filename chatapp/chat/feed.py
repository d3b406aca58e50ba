"""What one chat socket follows, and the ordering rules for the events it passes on.

A socket follows one conversation at a time. While a subscribe builds the conversation's
state, that conversation's events are held; once the state is sent, the held events follow in
order, less what the state already contains: deltas at or under the `seq` the state lists
for their answer (the seq floor) and message.created for messages the state lists. Plain
Python, no Channels: the consumer does the sending and the channel-layer calls, this class
decides.
"""

import asyncio
from typing import Any

from chatapp.chat.event_schema import StateMessage

ENDING_EVENTS = frozenset({"message.done", "message.error"})


class ConversationFeed:
    def __init__(self) -> None:
        self.following: int | None = None
        self._held: dict[int, list[dict[str, Any]]] = {}  # conversation -> events held
        self._known: dict[int, set[int]] = {}  # conversation -> message ids its state listed
        self._seq_floor: dict[int, int] = {}  # message -> last seq the client already has
        self._snapshots: dict[int, asyncio.Future[dict[str, Any] | None]] = {}
        # (conversation, leaf) of the chat.switch this socket is announcing: its own
        # conversation.switched is for the other sockets, this one gets conversation.state.
        self.own_switch: tuple[int, int] | None = None

    # --- following -------------------------------------------------------------------------

    def follow(self, conversation_id: int) -> int | None:
        """Follow this conversation; returns the one to leave, if any.

        A subscribe still holding events for the conversation left behind is dropped, and
        so are the seq floors of its answers.
        """
        if self.following == conversation_id:
            return None
        left = self.following
        if left is not None:
            self.stop_holding(left)
            # The floors are of the conversation left: its answers' ends no longer reach us.
            self._seq_floor.clear()
        self.following = conversation_id
        return left

    def hold(self, conversation_id: int) -> None:
        """A subscribe started: keep the conversation's events until its state is sent."""
        self._held[conversation_id] = []
        self._known.pop(conversation_id, None)

    def is_holding(self, conversation_id: int) -> bool:
        return conversation_id in self._held

    def stop_holding(self, conversation_id: int) -> None:
        """Drop the held events (the subscribe failed or was replaced)."""
        self._held.pop(conversation_id, None)
        self._known.pop(conversation_id, None)

    # --- events in ---------------------------------------------------------------------------

    def receive(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """A conversation event arrived: the event to send now, or None (held or dropped)."""
        conversation_id = event.get("conversation_id")
        if event["type"] == "conversation.switched" and self.own_switch == (
            conversation_id,
            event.get("leaf_id"),
        ):
            return None
        held = self._held.get(conversation_id) if isinstance(conversation_id, int) else None
        if held is not None:
            held.append(event)
            if event["type"] in ENDING_EVENTS:
                self._answer_ended(event["message_id"])
            return None
        if conversation_id != self.following:
            return None
        return event if self._is_new(event, frozenset()) else None

    # --- the state of a subscribe ----------------------------------------------------------

    def state_ready(
        self, conversation_id: int, messages: list[StateMessage], streaming: list[StateMessage]
    ) -> None:
        """The state about to be sent; the answers that were streaming set the seq floors, and
        so do those that ended after their deltas were held, before the state was read (it
        lists their whole text)."""
        floored: set[object] = {message["id"] for message in streaming}
        floored |= {event.get("message_id") for event in self._held.get(conversation_id, ())}
        for message in messages:
            if message["id"] in floored:
                self._seq_floor[message["id"]] = message["seq"]
        self._known[conversation_id] = {message["id"] for message in messages}

    def next_held(self, conversation_id: int) -> dict[str, Any] | None:
        """The next held event to send after the state; None once none is left.

        Holding ends in the same step as the last event is handed out, so an event arriving
        while the held ones are being sent still queues behind them.
        """
        held = self._held.get(conversation_id)
        known = self._known.get(conversation_id, set())
        while held:
            event = held.pop(0)
            if self._is_new(event, known):
                return event
        self.stop_holding(conversation_id)
        return None

    def _is_new(self, event: dict[str, Any], known: set[int] | frozenset[int]) -> bool:
        kind = event["type"]
        if kind == "message.delta":
            return bool(event["seq"] > self._seq_floor.get(event["message_id"], 0))
        if kind == "message.created":
            return event["message"]["id"] not in known
        if kind in ENDING_EVENTS:  # no delta of it follows: its floor would only take memory
            self._seq_floor.pop(event["message_id"], None)
        return True

    # --- snapshots of streaming answers ----------------------------------------------------

    def expect_snapshots(self, message_ids: list[int]) -> dict[int, asyncio.Future[Any]]:
        """Futures resolved by the answers' snapshots (None: ask the database instead)."""
        loop = asyncio.get_running_loop()
        waiters: dict[int, asyncio.Future[Any]] = {mid: loop.create_future() for mid in message_ids}
        self._snapshots.update(waiters)
        return waiters

    def forget_snapshots(self, message_ids: list[int]) -> None:
        for message_id in message_ids:
            self._snapshots.pop(message_id, None)

    def snapshot_arrived(self, event: dict[str, Any]) -> None:
        self._resolve(event["message_id"], event)

    def _answer_ended(self, message_id: int) -> None:
        """A subscribe waiting on this answer's snapshot will get it from the database now."""
        self._resolve(message_id, None)

    def _resolve(self, message_id: int, value: dict[str, Any] | None) -> None:
        waiter = self._snapshots.get(message_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(value)
