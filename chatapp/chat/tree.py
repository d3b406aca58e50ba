"""A conversation as a tree of messages, and the branch of it that is shown.

Each message has a parent (the message it follows); siblings share one: the versions of an
edited question, the answers to a regenerated one. The conversation remembers one message its
shown branch runs through (`active_leaf`); the branch is that message's ancestors, the message,
and below it the newest child at each step. A message is always newer than its parent, so a
branch in id order runs root to leaf.

Reading a branch is one query over the conversation's (id, parent) pairs, whatever the number
of branches; the messages themselves are then read by id.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from chatapp.chat.models import Message


@dataclass(frozen=True)
class Branch:
    path: tuple[int, ...]  # message ids, root to leaf
    parents: dict[int, int | None]  # every message of the conversation -> its parent
    children: dict[int | None, list[int]]  # parent (None: the roots) -> children, oldest first

    @property
    def leaf(self) -> int | None:
        return self.path[-1] if self.path else None

    def up_to(self, message_id: int | None) -> tuple[int, ...]:
        """The path from the root down to this message of it (None: nothing)."""
        if message_id is None or message_id not in self.path:
            return ()
        return self.path[: self.path.index(message_id) + 1]

    def siblings(self, message_id: int) -> list[int]:
        """The message and its siblings, oldest first."""
        return list(self.children.get(self.parents.get(message_id), [message_id]))


def shown_branch(pairs: Iterable[tuple[int, int | None]], through: int | None) -> Branch:
    """The branch through `through` (None or unknown: the newest one) from (id, parent) pairs."""
    parents: dict[int, int | None] = {}
    children: dict[int | None, list[int]] = {}
    for message_id, parent_id in sorted(pairs):
        parents[message_id] = parent_id
        children.setdefault(parent_id, []).append(message_id)
    path: list[int] = []
    seen: set[int] = set()  # the path's ids: a list's `in` would make the walk quadratic
    node = through if through in parents else None
    while node is not None and node not in seen:  # a cycle only in damaged data
        path.append(node)
        seen.add(node)
        node = parents.get(node)
    path.reverse()
    below = children.get(path[-1] if path else None)
    while below and below[-1] not in seen:
        path.append(below[-1])
        seen.add(below[-1])
        below = children.get(below[-1])
    return Branch(tuple(path), parents, children)


def conversation_branch(conversation_id: int, through: int | None) -> Branch:
    pairs = Message.objects.filter(conversation_id=conversation_id).values_list("id", "parent_id")
    return shown_branch(pairs, through)
