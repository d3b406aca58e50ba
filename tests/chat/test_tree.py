"""The shown branch of a tree of messages, and existing conversations becoming trees."""

import importlib

import pytest
from django.apps import apps

from chatapp.chat.models import Conversation, Message
from chatapp.chat.tree import shown_branch

# 1 -> 2 -> 3 -> 4, with 5 a second version of 3 (answered by 6) and 7 a second first message.
TREE = [(1, None), (2, 1), (3, 2), (4, 3), (5, 2), (6, 5), (7, None)]


def test_the_branch_runs_through_the_chosen_message_then_the_newest_below():
    assert shown_branch(TREE, 4).path == (1, 2, 3, 4)
    assert shown_branch(TREE, 3).path == (1, 2, 3, 4)
    assert shown_branch(TREE, 5).path == (1, 2, 5, 6)
    assert shown_branch(TREE, 2).path == (1, 2, 5, 6)
    assert shown_branch(TREE, 7).path == (7,)


def test_no_choice_or_an_unknown_one_shows_the_newest_branch():
    assert shown_branch(TREE, None).path == (7,)
    assert shown_branch(TREE, 99).path == (7,)
    assert shown_branch(TREE[:-1], None).path == (1, 2, 5, 6)
    assert shown_branch([], None).path == ()


def test_siblings_include_the_message_in_age_order():
    branch = shown_branch(TREE, 6)
    assert branch.siblings(3) == [3, 5]
    assert branch.siblings(5) == [3, 5]
    assert branch.siblings(1) == [1, 7]
    assert branch.siblings(6) == [6]
    assert branch.up_to(5) == (1, 2, 5)
    assert branch.up_to(None) == ()


class CountedId(int):
    """A message id that counts how often it is compared with another."""

    comparisons = 0

    def __eq__(self, other: object) -> bool:
        CountedId.comparisons += 1
        return int(self) == other

    __hash__ = int.__hash__


def comparisons_to_walk(length: int, through_leaf: bool) -> int:
    ids = [CountedId(n) for n in range(1, length + 1)]
    pairs = [(ids[0], None)] + [(ids[n], ids[n - 1]) for n in range(1, length)]
    CountedId.comparisons = 0
    branch = shown_branch(pairs, ids[-1] if through_leaf else ids[0])
    assert branch.path == tuple(range(1, length + 1))
    return CountedId.comparisons


@pytest.mark.parametrize("through_leaf", [True, False], ids=["up", "down"])
def test_walking_a_branch_twice_as_long_takes_twice_the_work(through_leaf):
    short, long = (comparisons_to_walk(n, through_leaf) for n in (1000, 2000))
    assert long <= 2 * short + 10


def test_a_cycle_in_damaged_data_does_not_loop_forever():
    assert len(shown_branch([(1, 2), (2, 1)], 1).path) <= 3


@pytest.mark.django_db
def test_messages_written_in_order_form_one_branch(team, member):
    chat = Conversation.objects.create(team=team, owner=member, model="m")
    rows = [
        Message.objects.create(conversation=chat, role=r, content=r)
        for r in ("user", "assistant", "user")
    ]
    assert [m.parent_id for m in rows] == [None, rows[0].pk, rows[1].pk]


@pytest.mark.django_db
def test_the_migration_makes_existing_conversations_straight_branches(team, member):
    migration = importlib.import_module("chatapp.chat.migrations.0005_message_tree")
    chats = [Conversation.objects.create(team=team, owner=member, model="m") for _ in range(2)]
    rows = []
    for n in range(6):  # interleaved, as real conversations are
        message = Message(conversation=chats[n % 2], role="user", content=str(n))
        message.explicit_parent = True  # no parent, as before the migration
        message.save()
        rows.append(message)
    migration.link_in_order(apps, None)
    parents = dict(Message.objects.values_list("id", "parent_id"))
    assert [parents[m.pk] for m in rows] == [
        None,
        None,
        rows[0].pk,
        rows[1].pk,
        rows[2].pk,
        rows[3].pk,
    ]
