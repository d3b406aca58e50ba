"""Conversations as trees over the socket: chat.edit, chat.switch, regenerate, the branch sent
upstream, and streaming, resume and second tabs on any branch."""

import pytest
from channels.db import database_sync_to_async

from chatapp.chat.api import conversation_data
from chatapp.chat.models import Conversation, Message
from chatapp.llm import KNOWN_MODELS

from .conftest import MODEL, joined_text

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = "[sim:long tokens=400] [sim:pace tps=40]"


async def finish(socket, content: str, **fields) -> dict:
    ids = await socket.send_message(content, **fields)
    await socket.until_type("message.done", ids["message_id"])
    return ids


async def edit(socket, message_id: int, content: str, request_id: str = "e1") -> dict:
    """chat.edit and its message.created pair; returns the new question and answer."""
    frame = {"type": "chat.edit", "request_id": request_id, "message_id": message_id}
    await socket.send({**frame, "content": content})
    frames = await socket.receive_until(
        lambda f: (
            f["type"] == "error"
            or (f["type"] == "message.created" and f["message"]["role"] == "assistant")
        )
    )
    assert frames[-1]["type"] == "message.created", frames
    question, answer = (f["message"] for f in frames if f["type"] == "message.created")
    return {"question": question, "answer": answer}


async def state_of(socket, conversation_id: int) -> list[dict]:
    await socket.send({"type": "chat.subscribe", "conversation_id": conversation_id})
    return (await socket.until_type("conversation.state"))[-1]["messages"]


async def two_turns(socket) -> tuple[dict, dict]:
    first = await finish(socket, "First question")
    second = await finish(socket, "Second question", conversation_id=first["conversation_id"])
    return first, second


async def test_edit_adds_a_question_beside_the_old_one_and_answers_the_new_branch(
    connect, member, sim
):
    socket = await connect(member)
    first, second = await two_turns(socket)
    made = await edit(socket, second["user_message_id"], "Second question, better")
    question, answer = made["question"], made["answer"]
    assert question["parent_id"] == first["message_id"]
    assert question["sibling_ids"] == [second["user_message_id"], question["id"]]
    assert answer["parent_id"] == question["id"]
    assert answer["sibling_ids"] == [answer["id"]]
    frames = await socket.until_type("message.done", answer["id"])
    assert frames[-1]["status"] == "complete"
    first_answer = await Message.objects.aget(pk=first["message_id"])
    assert sim.requests[-1]["messages"] == [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": first_answer.content},
        {"role": "user", "content": "Second question, better"},
    ]
    state = await state_of(socket, first["conversation_id"])
    assert [m["id"] for m in state] == [
        first["user_message_id"],
        first["message_id"],
        question["id"],
        answer["id"],
    ]
    assert [m["parent_id"] for m in state] == [
        None,
        first["user_message_id"],
        first["message_id"],
        question["id"],
    ]
    assert state[2]["sibling_ids"] == [second["user_message_id"], question["id"]]
    assert state[3]["content"] == joined_text(frames, answer["id"])
    assert await Message.objects.filter(conversation_id=first["conversation_id"]).acount() == 6


async def test_editing_the_first_question_starts_a_branch_from_the_top(connect, member, sim):
    socket = await connect(member)
    first, _ = await two_turns(socket)
    made = await edit(socket, first["user_message_id"], "A different start")
    assert made["question"]["parent_id"] is None
    assert made["question"]["sibling_ids"] == [first["user_message_id"], made["question"]["id"]]
    await socket.until_type("message.done", made["answer"]["id"])
    assert sim.requests[-1]["messages"] == [{"role": "user", "content": "A different start"}]
    state = await state_of(socket, first["conversation_id"])
    assert [m["id"] for m in state] == [made["question"]["id"], made["answer"]["id"]]


async def test_switch_shows_the_branch_remembers_it_and_sends_continue_it(connect, member, sim):
    socket = await connect(member)
    first, second = await two_turns(socket)
    made = await edit(socket, second["user_message_id"], "Edited")
    await socket.until_type("message.done", made["answer"]["id"])

    await socket.send({"type": "chat.switch", "message_id": second["user_message_id"]})
    state = (await socket.until_type("conversation.state"))[-1]
    assert state["conversation_id"] == first["conversation_id"]
    old_branch = [
        first["user_message_id"],
        first["message_id"],
        second["user_message_id"],
        second["message_id"],
    ]
    assert [m["id"] for m in state["messages"]] == old_branch
    assert state["messages"][2]["sibling_ids"] == [
        second["user_message_id"],
        made["question"]["id"],
    ]
    # Each answer says how it ended, as the conversation API does: the page shows it.
    api = await database_sync_to_async(conversation_data)(
        await Conversation.objects.aget(pk=first["conversation_id"])
    )
    for listed, shown in zip(api["messages"], state["messages"], strict=True):
        if shown["role"] == "assistant":
            assert shown["usage"] == listed["usage"] and shown["usage"]["completion_tokens"] > 0
            assert (shown["model"], shown["finish_reason"]) == (listed["model"], "stop")
            assert "error" not in shown
        else:
            assert "usage" not in shown and "model" not in shown
    conversation = await Conversation.objects.aget(pk=first["conversation_id"])
    assert conversation.active_leaf_id == second["message_id"]

    reloaded = await connect(member)  # a reload shows the branch chosen
    assert [m["id"] for m in await state_of(reloaded, first["conversation_id"])] == old_branch

    third = await finish(socket, "Third question", conversation_id=first["conversation_id"])
    sent = [m["content"] for m in sim.requests[-1]["messages"]]
    assert sent[0::2] == ["First question", "Second question", "Third question"]
    assert "Edited" not in sent
    third_question = await Message.objects.aget(pk=third["user_message_id"])
    assert third_question.parent_id == second["message_id"]


async def test_switching_to_an_earlier_message_follows_the_newest_answers_below_it(
    connect, member, sim
):
    socket = await connect(member)
    first, second = await two_turns(socket)
    await socket.send({"type": "chat.regenerate", "message_id": second["message_id"]})
    created = (await socket.until_type("message.created"))[-1]["message"]
    await socket.until_type("message.done", created["id"])
    await socket.send({"type": "chat.switch", "message_id": second["message_id"]})
    state = (await socket.until_type("conversation.state"))[-1]
    assert state["messages"][-1]["id"] == second["message_id"]
    assert state["messages"][-1]["sibling_ids"] == [second["message_id"], created["id"]]
    await socket.send({"type": "chat.switch", "message_id": first["user_message_id"]})
    state = (await socket.until_type("conversation.state"))[-1]
    assert state["messages"][-1]["id"] == created["id"]


async def test_a_regenerate_takes_the_settings_changed_meanwhile(connect, member, sim):
    socket = await connect(member)
    first = await finish(socket, "Tell me about llamas")
    other = next(model for model in KNOWN_MODELS if model != MODEL)
    changed = {"model": other, "max_tokens": 7, "temperature": 0.3}
    frame = {"type": "chat.regenerate", "request_id": "r1", "message_id": first["message_id"]}
    await socket.send({**frame, "settings": changed})
    created = (await socket.until_type("message.created"))[-1]
    assert created["request_id"] == "r1"
    done = (await socket.until_type("message.done", created["message"]["id"]))[-1]
    assert (done["model"], done["finish_reason"]) == (other, "length")
    sent = sim.requests[-1]
    assert (sent["model"], sent["max_completion_tokens"], sent["temperature"]) == (other, 7, 0.3)
    conversation = await Conversation.objects.aget(pk=first["conversation_id"])
    assert (conversation.model, conversation.max_tokens) == (other, 7)  # as a send's settings


@pytest.mark.parametrize(
    ("changed", "code", "field"),
    [
        ({"system_prompt": "Be terse."}, "invalid_frame", "system_prompt"),
        ({"temperature": 9}, "invalid_setting", "temperature"),
        ({"model": "gpt-4"}, "model_not_allowed", "model"),
        ({"tools": "yes"}, "invalid_frame", "tools"),
    ],
)
async def test_a_regenerate_with_refused_settings_changes_nothing(
    connect, member, sim, changed, code, field
):
    socket = await connect(member)
    first = await finish(socket, "Tell me about llamas")
    asked = len(sim.requests)
    frame = {"type": "chat.regenerate", "message_id": first["message_id"], "settings": changed}
    error = (await socket.expect_error(frame))["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert len(sim.requests) == asked
    conversation = await Conversation.objects.aget(pk=first["conversation_id"])
    assert conversation.model == MODEL
    assert await Message.objects.filter(conversation=conversation).acount() == 2


async def test_another_tab_hears_the_switch(connect, member, sim):
    """chat.switch answers conversation.state; the conversation's other sockets get
    conversation.switched, and the switching one no switch of its own."""
    socket = await connect(member)
    first, second = await two_turns(socket)
    made = await edit(socket, second["user_message_id"], "Edited")
    await socket.until_type("message.done", made["answer"]["id"])
    other = await connect(member)
    await state_of(other, first["conversation_id"])
    await socket.send({"type": "chat.switch", "message_id": second["message_id"]})
    switched = (await other.until_type("conversation.switched"))[-1]
    assert switched == {
        "type": "conversation.switched",
        "conversation_id": first["conversation_id"],
        "leaf_id": second["message_id"],
    }
    state = (await socket.until_type("conversation.state"))[-1]
    assert state["messages"][-1]["id"] == second["message_id"]
    assert await socket.nothing_more(), socket.received[-1]


async def test_another_tab_sees_an_edit_stream(connect, member, sim):
    socket = await connect(member)
    first, second = await two_turns(socket)
    other = await connect(member)
    await state_of(other, first["conversation_id"])
    made = await edit(socket, second["user_message_id"], "Edited")
    frames = await other.until_type("message.done", made["answer"]["id"])
    created = [f["message"] for f in frames if f["type"] == "message.created"]
    assert [(m["id"], m["parent_id"]) for m in created] == [
        (made["question"]["id"], first["message_id"]),
        (made["answer"]["id"], made["question"]["id"]),
    ]
    answer = await Message.objects.aget(pk=made["answer"]["id"])
    assert joined_text(frames, answer.pk) == answer.content


async def test_an_edited_answer_resumes_after_a_reload_and_stops(connect, member, sim):
    socket = await connect(member)
    first, second = await two_turns(socket)
    made = await edit(socket, second["user_message_id"], f"Edited, and long {SLOW}")
    answer_id = made["answer"]["id"]
    await socket.receive_until(lambda f: f["type"] == "message.delta" and f["seq"] >= 3)

    reloaded = await connect(member)
    state = await state_of(reloaded, first["conversation_id"])
    assert [m["id"] for m in state][-2:] == [made["question"]["id"], answer_id]
    streaming = state[-1]
    assert streaming["status"] == "streaming"
    await reloaded.send({"type": "chat.stop", "message_id": answer_id})
    rest = await reloaded.until_type("message.done", answer_id)
    assert rest[-1]["status"] == "stopped"
    answer = await Message.objects.aget(pk=answer_id)
    assert streaming["content"] + joined_text(rest, answer_id) == answer.content


async def test_edit_and_switch_refusals_change_nothing(connect, member, outsider, sim):
    socket = await connect(member)
    first, second = await two_turns(socket)
    outsiders = await connect(outsider)
    theirs = await finish(outsiders, "Mine")

    def frame(kind, message_id, **fields):
        return {"type": kind, "message_id": message_id, **fields}

    refusals = [
        (frame("chat.edit", second["message_id"], content="x"), "invalid_frame"),
        (frame("chat.edit", theirs["user_message_id"], content="x"), "not_found"),
        (frame("chat.edit", 10**9, content="x"), "not_found"),
        (frame("chat.edit", second["user_message_id"], content="  "), "empty_content"),
        (frame("chat.edit", second["user_message_id"]), "invalid_frame"),
        (frame("chat.edit", "7", content="x"), "invalid_frame"),
        (
            frame("chat.edit", second["user_message_id"], content="x", conversation_id=1),
            "invalid_frame",
        ),
        (frame("chat.edit", second["user_message_id"], content="x", team_id=1), "invalid_frame"),
        (
            frame(
                "chat.edit", second["user_message_id"], content="x", settings={"system_prompt": ""}
            ),
            "invalid_frame",
        ),
        (frame("chat.edit", second["user_message_id"], content="a\x00b"), "invalid_text"),
        (frame("chat.switch", theirs["message_id"]), "not_found"),
        (frame("chat.switch", None), "invalid_frame"),
        (frame("chat.switch", True), "invalid_frame"),
    ]
    for sent, code in refusals:
        assert (await socket.expect_error(sent))["error"]["code"] == code, sent
    assert await Message.objects.filter(conversation_id=first["conversation_id"]).acount() == 4
    conversation = await Conversation.objects.aget(pk=first["conversation_id"])
    assert conversation.active_leaf_id == second["message_id"]


async def test_no_edit_or_switch_while_an_answer_streams(connect, member, sim):
    socket = await connect(member)
    first, second = await two_turns(socket)
    slow = await socket.send_message(f"Slow {SLOW}", conversation_id=first["conversation_id"])
    editing = {"type": "chat.edit", "message_id": second["user_message_id"], "content": "x"}
    assert (await socket.expect_error(editing))["error"]["code"] == "conversation_busy"
    switching = {"type": "chat.switch", "message_id": second["message_id"]}
    assert (await socket.expect_error(switching))["error"]["code"] == "conversation_busy"
    await socket.send({"type": "chat.stop", "message_id": slow["message_id"]})
    await socket.until_type("message.done", slow["message_id"])


async def test_a_switch_naming_another_conversation_is_not_found_and_changes_nothing(
    connect, member, sim
):
    """The page sends the conversation it shows (a search link's message id may be of
    another): the switch neither moves the socket nor changes the other one's branch."""
    socket = await connect(member)
    first, second = await two_turns(socket)
    made = await edit(socket, second["user_message_id"], "Edited")
    await socket.until_type("message.done", made["answer"]["id"])
    shown = await finish(socket, "Another conversation")
    await state_of(socket, shown["conversation_id"])

    frame = {
        "type": "chat.switch",
        "request_id": "s1",
        "conversation_id": shown["conversation_id"],
        "message_id": second["message_id"],
    }
    error = (await socket.expect_error(frame))["error"]
    assert (error["code"], error["field"]) == ("not_found", "message_id")
    conversation = await Conversation.objects.aget(pk=first["conversation_id"])
    assert conversation.active_leaf_id == made["answer"]["id"]
    # The socket still follows the conversation it shows: another tab's send there reaches it.
    other = await connect(member)
    more = await other.send_message("More", conversation_id=shown["conversation_id"])
    frames = await socket.until_type("message.done", more["message_id"])
    assert frames[-1]["conversation_id"] == shown["conversation_id"]

    await socket.send({**frame, "conversation_id": first["conversation_id"]})
    state = (await socket.until_type("conversation.state"))[-1]
    assert state["conversation_id"] == first["conversation_id"]
    assert state["messages"][-1]["id"] == second["message_id"]
    bad = {**frame, "conversation_id": "1"}
    assert (await socket.expect_error(bad))["error"]["field"] == "conversation_id"
