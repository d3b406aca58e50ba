"""The conversation API on a conversation with branches: the shown one, its versions, reads
whose query count does not grow with the number of branches."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatapp.chat.models import Message


def detail_url(conversation) -> str:
    return f"/api/conversations/{conversation.pk}/"


def add(conversation, parent, role, content) -> Message:
    message = Message(conversation=conversation, parent=parent, role=role, content=content)
    message.explicit_parent = True
    message.save()
    return message


def branched(make_conversation, member, versions: int):
    """q1 -> a1 -> q2 -> a2, then `versions` more versions of q2, each answered."""
    chat = make_conversation(member, "Branches", messages=[("user", "q1"), ("assistant", "a1")])
    q1, a1 = chat.messages.order_by("id")
    q2 = add(chat, a1, "user", "q2")
    add(chat, q2, "assistant", "a2")
    for n in range(versions):
        question = add(chat, a1, "user", f"q2 v{n}")
        add(chat, question, "assistant", f"a2 v{n}")
    return chat, q1, a1, q2


def test_detail_lists_the_shown_branch_with_parents_and_siblings(
    member_client, member, make_conversation
):
    chat, q1, a1, q2 = branched(make_conversation, member, versions=2)
    messages = member_client.get(detail_url(chat)).json()["messages"]
    # No branch chosen yet: the newest one.
    assert [m["content"] for m in messages] == ["q1", "a1", "q2 v1", "a2 v1"]
    assert [m["parent_id"] for m in messages[:3]] == [None, q1.pk, a1.pk]
    versions = list(chat.messages.filter(parent=a1).values_list("id", flat=True))
    assert messages[2]["sibling_ids"] == versions == [q2.pk, *versions[1:]]
    assert messages[0]["sibling_ids"] == [q1.pk]
    assert messages[3]["sibling_ids"] == [messages[3]["id"]]

    chat.active_leaf = q2
    chat.save(update_fields=["active_leaf"])
    messages = member_client.get(detail_url(chat)).json()["messages"]
    assert [m["content"] for m in messages] == ["q1", "a1", "q2", "a2"]


def test_detail_reads_take_the_same_queries_whatever_the_branches(
    member_client, member, make_conversation
):
    few, *_ = branched(make_conversation, member, versions=1)
    many, *_ = branched(make_conversation, member, versions=12)
    member_client.get(detail_url(few))  # the session and caches settle
    counts = []
    for chat in (few, many):
        with CaptureQueriesContext(connection) as queries:
            assert member_client.get(detail_url(chat)).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_markdown_export_holds_the_shown_branch_and_json_the_whole_tree(
    member_client, member, make_conversation
):
    chat, q1, a1, q2 = branched(make_conversation, member, versions=1)
    chat.active_leaf = q2
    chat.save(update_fields=["active_leaf"])
    url = detail_url(chat) + "export"

    text = member_client.get(url, {"format": "md"}).content.decode()
    assert text.index("q1") < text.index("a1") < text.index("q2") < text.index("a2")
    assert "q2 v0" not in text and "a2 v0" not in text

    data = member_client.get(url, {"format": "json"}).json()
    assert [m["content"] for m in data["messages"]] == ["q1", "a1", "q2", "a2"]
    every = list(chat.messages.order_by("id").values_list("id", "parent_id", "content"))
    assert [(m["id"], m["parent_id"], m["content"]) for m in data["tree"]] == every
    by_id = {m["id"]: m for m in data["tree"]}
    assert by_id[q2.pk]["sibling_ids"] == [q2.pk, q2.pk + 2]
