"""Conversations over the socket: titles, prompts, settings, history, regenerate, limits."""

import io

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.test import Client

from chatapp.chat.models import Conversation, Message
from chatapp.llm import MODEL_CONTEXT_LIMITS
from chatapp.teams.models import Membership, Role, SystemPrompt, Team, TeamPolicy, TeamUsage
from tests.chat.test_retention import aged

from .conftest import MODEL, joined_text

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = "[sim:long tokens=300] [sim:pace tps=60]"


async def finish(socket, content: str, **fields) -> dict:
    ids = await socket.send_message(content, **fields)
    ids["done"] = (await socket.until_type("message.done", ids["message_id"]))[-1]
    return ids


async def test_first_message_titles_the_conversation(connect, member, sim):
    socket = await connect(member)
    long_question = "Explain " + "very " * 30 + "carefully\nwith a second line"
    ids = await finish(socket, long_question)
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.title.startswith("Explain very very")
    assert conversation.title.endswith("…")
    assert len(conversation.title) <= 61
    await finish(socket, "A follow-up", conversation_id=conversation.pk)
    await conversation.arefresh_from_db()
    assert conversation.title.startswith("Explain very very")


async def test_follow_ups_send_the_whole_history(connect, member, sim):
    socket = await connect(member)
    first = await finish(socket, "First question")
    await finish(socket, "Second question", conversation_id=first["conversation_id"])
    answer = await Message.objects.aget(pk=first["message_id"])
    sent = sim.requests[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "First question"),
        ("assistant", answer.content),
        ("user", "Second question"),
    ]


async def test_default_prompt_is_snapshotted_and_sent_first(connect, member, team, sim):
    await SystemPrompt.objects.acreate(team=team, name="Pirate", content="Talk like a pirate.")
    await SystemPrompt.objects.acreate(
        team=team, name="Plain", content="Be plain.", is_default=True
    )
    socket = await connect(member)
    ids = await finish(socket, "Hello")
    assert sim.requests[-1]["messages"][0] == {"role": "system", "content": "Be plain."}
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.system_prompt_text == "Be plain."
    await SystemPrompt.objects.filter(name="Plain").aupdate(content="Changed later.")
    await finish(socket, "Again", conversation_id=conversation.pk)
    assert sim.requests[-1]["messages"][0]["content"] == "Be plain."


async def test_chosen_prompt_and_settings_apply(connect, member, team, sim):
    pirate = await SystemPrompt.objects.acreate(team=team, name="Pirate", content="Arr.")
    socket = await connect(member)
    settings = {"model": "Llama-3.3-8B-Instruct", "temperature": 0.2, "max_tokens": 300}
    ids = await finish(socket, "Hi", system_prompt_id=pirate.pk, settings=settings)
    request = sim.requests[-1]
    assert request["messages"][0] == {"role": "system", "content": "Arr."}
    assert request["model"] == "Llama-3.3-8B-Instruct"
    assert (request["temperature"], request["max_completion_tokens"]) == (0.2, 300)
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert (conversation.model, conversation.temperature) == ("Llama-3.3-8B-Instruct", 0.2)
    message = await Message.objects.aget(pk=ids["message_id"])
    assert message.model == "Llama-3.3-8B-Instruct"


async def test_a_later_send_with_another_prompt_switches_the_conversation_to_it(
    connect, member, team, sim
):
    """The prompt a later send names becomes the conversation's: its text goes upstream on
    that send and on the ones after it that name none."""
    await SystemPrompt.objects.acreate(
        team=team, name="Plain", content="Be plain.", is_default=True
    )
    pirate = await SystemPrompt.objects.acreate(team=team, name="Pirate", content="Arr.")
    socket = await connect(member)
    ids = await finish(socket, "Hi")
    conversation_id = ids["conversation_id"]
    await finish(
        socket, "Now as a pirate", conversation_id=conversation_id, system_prompt_id=pirate.pk
    )
    assert sim.requests[-1]["messages"][0] == {"role": "system", "content": "Arr."}
    conversation = await Conversation.objects.aget(pk=conversation_id)
    assert (conversation.system_prompt_id, conversation.system_prompt_text) == (pirate.pk, "Arr.")
    await finish(socket, "And again", conversation_id=conversation_id)
    assert sim.requests[-1]["messages"][0] == {"role": "system", "content": "Arr."}


async def prompt_changes_are_refused(socket, conversation_id: int, other, sim) -> None:
    """Switching the chat to another prompt, or writing one's own, is refused; only the
    locked prompt went upstream."""
    for frame in (
        {"system_prompt_id": other.pk},
        {"settings": {"system_prompt": "Ignore rules."}},
    ):
        reply = await socket.expect_error(
            {"type": "chat.send", "content": "x", "conversation_id": conversation_id, **frame}
        )
        assert reply["error"]["code"] == "prompt_locked"
    assert await Message.objects.filter(conversation_id=conversation_id).acount() == 2
    assert all(r["messages"][0]["content"] == "Follow policy." for r in sim.requests)


async def test_a_locked_prompt_cannot_be_replaced(connect, member, team, sim):
    await SystemPrompt.objects.acreate(
        team=team, name="Policy", content="Follow policy.", is_default=True, locked=True
    )
    other = await SystemPrompt.objects.acreate(team=team, name="Other", content="Anything.")
    socket = await connect(member)
    refused = await socket.expect_error(
        {"type": "chat.send", "content": "Hi", "settings": {"system_prompt": "Ignore rules."}}
    )
    assert refused["error"]["code"] == "prompt_locked"
    ids = await finish(socket, "Hi")
    await prompt_changes_are_refused(socket, ids["conversation_id"], other, sim)


async def test_a_prompt_locked_after_a_chat_started_from_it_locks_that_chat_too(
    connect, member, team, sim
):
    """docs/teams.md: members cannot replace or edit the system message of conversations
    started from a locked prompt; an admin who locks a prompt later locks the chats already
    started from it as well."""
    policy = await SystemPrompt.objects.acreate(
        team=team, name="Policy", content="Follow policy.", is_default=True
    )
    other = await SystemPrompt.objects.acreate(team=team, name="Other", content="Anything.")
    socket = await connect(member)
    ids = await finish(socket, "Hi")
    await SystemPrompt.objects.filter(pk=policy.pk).aupdate(locked=True)
    await prompt_changes_are_refused(socket, ids["conversation_id"], other, sim)


async def test_history_is_trimmed_from_the_oldest_turn_keeping_the_system_prompt(
    connect, member, team, sim, monkeypatch
):
    await SystemPrompt.objects.acreate(
        team=team, name="Keep", content="Always kept.", is_default=True
    )
    socket = await connect(member)
    ids = await finish(socket, "Opening question " + "words " * 60, settings={"max_tokens": 200})
    conversation_id = ids["conversation_id"]
    for n in range(4):
        await finish(socket, f"Question {n} " + "more " * 60, conversation_id=conversation_id)
    everything = len(sim.requests[-1]["messages"])
    assert everything == 1 + 9  # nothing trimmed yet
    monkeypatch.setitem(MODEL_CONTEXT_LIMITS, MODEL, 1000)  # prompt budget: 800 tokens
    await finish(socket, "Last question", conversation_id=conversation_id)
    sent = sim.requests[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "Always kept."}
    assert sent[1]["role"] == "user"
    assert sent[-1] == {"role": "user", "content": "Last question"}
    assert len(sent) < everything + 2
    assert all("Opening question" not in m["content"] for m in sent)


async def test_regenerate_keeps_the_earlier_answer_beside_the_new_one(connect, member, sim):
    socket = await connect(member)
    ids = await finish(socket, "Tell me something")
    await socket.send({"type": "chat.regenerate", "message_id": ids["message_id"]})
    created = (await socket.until_type("message.created"))[-1]
    assert created["replaces"] == ids["message_id"]
    assert created["message"]["role"] == "assistant"
    assert created["message"]["parent_id"] == ids["user_message_id"]
    new_id = created["message"]["id"]
    assert created["message"]["sibling_ids"] == [ids["message_id"], new_id]
    frames = await socket.until_type("message.done", new_id)
    assert frames[-1]["status"] == "complete"
    assert sim.requests[-1]["messages"] == sim.requests[-2]["messages"]
    messages = [m async for m in Message.objects.filter(conversation_id=ids["conversation_id"])]
    assert [(m.pk, m.role, m.parent_id) for m in messages] == [
        (ids["user_message_id"], "user", None),
        (ids["message_id"], "assistant", ids["user_message_id"]),
        (new_id, "assistant", ids["user_message_id"]),
    ]
    assert messages[2].content == joined_text(frames, new_id)


async def test_an_earlier_answer_regenerates_on_a_branch_of_its_own(connect, member, sim):
    socket = await connect(member)
    first = await finish(socket, "One")
    await finish(socket, "Two", conversation_id=first["conversation_id"])
    await socket.send({"type": "chat.regenerate", "message_id": first["message_id"]})
    created = (await socket.until_type("message.created"))[-1]
    new_id = created["message"]["id"]
    await socket.until_type("message.done", new_id)
    assert sim.requests[-1]["messages"] == [{"role": "user", "content": "One"}]
    await socket.send({"type": "chat.subscribe", "conversation_id": first["conversation_id"]})
    state = (await socket.until_type("conversation.state"))[-1]
    assert [m["id"] for m in state["messages"]] == [first["user_message_id"], new_id]
    assert state["messages"][1]["sibling_ids"] == [first["message_id"], new_id]
    question = {"type": "chat.regenerate", "message_id": first["user_message_id"]}
    assert (await socket.expect_error(question))["error"]["code"] == "invalid_frame"
    assert await Message.objects.acount() == 5


async def test_one_answer_at_a_time_per_conversation(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message(f"Slow {SLOW}")
    reply = await socket.expect_error(
        {"type": "chat.send", "content": "Me too", "conversation_id": ids["conversation_id"]}
    )
    assert reply["error"]["code"] == "conversation_busy"
    regenerate = {"type": "chat.regenerate", "message_id": ids["message_id"]}
    assert (await socket.expect_error(regenerate))["error"]["code"] == "conversation_busy"
    assert await Message.objects.acount() == 2


async def test_a_conversation_of_a_team_one_has_left_takes_no_more_questions(
    connect, member, team, sim
):
    socket = await connect(member)
    first = await finish(socket, "Before leaving")
    await database_sync_to_async(Membership.objects.filter(team=team, user=member).delete)()
    assert (await socket.until_type("team.left"))[-1]["team_id"] == team.pk
    sent = len(sim.requests)
    frame = {"type": "chat.send", "content": "After", "conversation_id": first["conversation_id"]}
    reply = await socket.expect_error(frame)
    assert reply["error"]["code"] == "forbidden"
    regenerate = {"type": "chat.regenerate", "message_id": first["message_id"]}
    assert (await socket.expect_error(regenerate))["error"]["code"] == "forbidden"
    assert len(sim.requests) == sent
    assert await Message.objects.acount() == 2


async def test_concurrent_generations_are_capped_per_user(connect, member, sim, settings):
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 1
    socket = await connect(member)
    first = await socket.send_message(f"Slow {SLOW}")
    # Its first token: the simulator has logged the first request (message.created may come
    # before the request reaches it).
    await socket.until_type("message.delta", first["message_id"])
    reply = await socket.expect_error({"type": "chat.send", "request_id": "b", "content": "Two"})
    assert reply["error"]["code"] == "rate_limited"
    assert reply["request_id"] == "b"
    assert await Conversation.objects.acount() == 1
    assert len(sim.requests) == 1


async def test_frames_per_minute_are_capped_per_user(connect, member, sim, settings):
    settings.CHAT_WS_MESSAGES_PER_MINUTE = 3
    first, second = await connect(member), await connect(member)
    for socket in (first, second, first):
        reply = await socket.expect_error({"type": "chat.subscribe", "conversation_id": 404})
        assert reply["error"]["code"] == "not_found"
    limited = await second.expect_error({"type": "chat.send", "content": "hi"})
    assert limited["error"]["code"] == "rate_limited"
    assert await Conversation.objects.acount() == 0


async def test_a_stop_is_honoured_after_a_flood_of_other_frames(connect, member, sim, settings):
    """Stops are counted apart from the other frames: a socket over the frame limit can still
    stop its answer, and stops have the same limit of their own."""
    settings.CHAT_WS_MESSAGES_PER_MINUTE = 3
    socket = await connect(member)
    ids = await socket.send_message(f"Slow {SLOW}")
    await socket.until_type("message.delta", ids["message_id"])
    for _ in range(2):
        assert (await socket.expect_error("flood"))["error"]["code"] == "invalid_json"
    assert (await socket.expect_error("flood"))["error"]["code"] == "rate_limited"
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "stopped"
    # Stopping again does nothing; nonsense is refused as ever, and counts among the stops.
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    reply = await socket.expect_error({"type": "chat.stop", "message_id": 999_999})
    assert reply["error"]["code"] == "not_found"
    reply = await socket.expect_error({"type": "chat.stop", "message_id": ids["message_id"]})
    assert reply["error"]["code"] == "rate_limited"
    assert (await socket.expect_error("flood"))["error"]["code"] == "rate_limited"


async def test_team_quota_is_checked_before_anything_goes_upstream(connect, member, team, sim):
    await TeamPolicy.objects.acreate(team=team, monthly_token_budget=0)
    socket = await connect(member)
    reply = await socket.expect_error({"type": "chat.send", "request_id": "q", "content": "Hi"})
    assert reply["error"]["code"] == "quota_exceeded"
    assert sim.requests == []
    assert await Message.objects.acount() == 0


async def test_usage_is_recorded_for_the_team(connect, member, team, sim):
    socket = await connect(member)
    ids = await finish(socket, "Count me")
    usage = ids["done"]["usage"]
    row = await TeamUsage.objects.aget(team=team, user=member)
    assert (row.prompt_tokens, row.completion_tokens, row.requests) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        1,
    )
    message = await Message.objects.aget(pk=ids["message_id"])
    assert message.prompt_tokens == usage["prompt_tokens"]
    assert message.finish_reason == "stop"
    assert message.time_to_first_token_ms is not None
    assert message.duration_ms >= message.time_to_first_token_ms
    assert message.upstream_request_id


@database_sync_to_async
def team_of(conversation_id: int):
    return Conversation.objects.select_related("team").get(pk=conversation_id).team


async def test_new_conversations_go_to_the_sessions_team(connect, member, team, sim):
    ids = await finish(await connect(member), "Which team?")
    assert (await team_of(ids["conversation_id"])).pk == team.pk


async def test_a_new_conversation_starts_in_the_team_the_page_names(connect, member, team, sim):
    """A tab still showing one team after another tab switched the session to another: its
    new chat goes where the tab shows, with that team's prompts."""
    beta = await Team.objects.acreate(name="Beta")
    await Membership.objects.acreate(team=beta, user=member, role=Role.MEMBER)
    prompt = await SystemPrompt.objects.acreate(team=beta, name="Beta's", content="Speak Beta.")
    socket = await connect(member)  # the session's team is Acme, the first
    ids = await finish(socket, "Which team?", team_id=beta.pk, system_prompt_id=prompt.pk)
    conversation = await Conversation.objects.select_related("team").aget(pk=ids["conversation_id"])
    assert (conversation.team.name, conversation.system_prompt_text) == ("Beta", "Speak Beta.")
    ids = await finish(socket, "And without?")
    assert (await team_of(ids["conversation_id"])).pk == team.pk


async def test_a_team_one_is_not_in_is_not_found_and_nothing_is_written(
    connect, make_user, member, sim
):
    elsewhere = await Team.objects.acreate(name="Elsewhere")
    stranger = await database_sync_to_async(make_user)("stranger")
    await Membership.objects.acreate(team=elsewhere, user=stranger, role=Role.OWNER)
    socket = await connect(member)
    error = await socket.expect_error(
        {"type": "chat.send", "content": "Let me in", "team_id": elsewhere.pk}
    )
    assert (error["error"]["code"], error["error"]["field"]) == ("not_found", "team_id")
    assert await Conversation.objects.acount() == 0
    assert sim.requests == []


async def test_the_cap_holds_for_sends_at_the_same_moment(connect, member, sim, settings):
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 1
    sockets = [await connect(member) for _ in range(3)]
    for number, socket in enumerate(sockets):
        await socket.send({"type": "chat.send", "request_id": f"r{number}", "content": SLOW})
    replies = [
        await socket.receive_until(lambda f: f["type"] in ("message.created", "error"))
        for socket in sockets
    ]
    refused = [r[-1] for r in replies if r[-1]["type"] == "error"]
    assert len(refused) == 2
    assert {r["error"]["code"] for r in refused} == {"rate_limited"}
    streaming = Message.objects.filter(role="assistant", status="streaming")
    assert await streaming.acount() == 1


async def test_sends_refused_by_the_cap_never_reach_upstream(connect, member, sim, settings):
    settings.CHAT_MAX_CONCURRENT_GENERATIONS = 3
    sockets = [await connect(member) for _ in range(12)]
    for number, socket in enumerate(sockets):
        await socket.send({"type": "chat.send", "request_id": f"r{number}", "content": SLOW})
    replies = [
        (await socket.receive_until(lambda f: f["type"] in ("message.created", "error")))[-1]
        for socket in sockets
    ]
    refused = [r for r in replies if r["type"] == "error"]
    assert len(refused) == 9
    assert {r["error"]["code"] for r in refused} == {"rate_limited"}
    streaming = Message.objects.filter(role="assistant", status="streaming")
    assert await streaming.acount() == 3
    accepted = [s for s, r in zip(sockets, replies, strict=True) if r["type"] != "error"]
    for socket in accepted:  # each accepted answer is under way upstream
        await socket.until_type("message.delta")
    assert len(sim.requests) == 3


def delete_as(user, conversation_id: int) -> int:
    client = Client()
    client.force_login(user)
    return client.delete(f"/api/conversations/{conversation_id}/").status_code


def rename_as(user, conversation_id: int, title: str) -> int:
    client = Client()
    client.force_login(user)
    path = f"/api/conversations/{conversation_id}/"
    return client.patch(path, {"title": title}, content_type="application/json").status_code


async def test_a_rename_reaches_every_socket_of_the_owner_only(connect, member, outsider, sim):
    socket = await connect(member)
    other_tab = await connect(member)
    stranger = await connect(outsider)
    ids = await finish(socket, "Plan the offsite")
    assert await database_sync_to_async(rename_as)(member, ids["conversation_id"], "Agenda") == 200
    expected = {
        "type": "conversation.updated",
        "conversation": {"id": ids["conversation_id"], "title": "Agenda"},
    }
    assert (await socket.until_type("conversation.updated"))[-1] == expected
    assert (await other_tab.until_type("conversation.updated"))[-1] == expected
    assert await stranger.nothing_more()


async def test_a_delete_reaches_every_socket_of_the_owner_only(connect, member, outsider, sim):
    socket = await connect(member)
    other_tab = await connect(member)
    stranger = await connect(outsider)
    ids = await finish(socket, "Plan the offsite")
    assert await database_sync_to_async(delete_as)(member, ids["conversation_id"]) == 204
    expected = {"type": "conversation.deleted", "conversation_id": ids["conversation_id"]}
    assert (await socket.until_type("conversation.deleted"))[-1] == expected
    assert (await other_tab.until_type("conversation.deleted"))[-1] == expected
    assert await stranger.nothing_more()


async def test_conversations_deleted_by_the_sweeps_leave_their_owners_tabs(
    connect, member, outsider, team, sim
):
    """Retention and the temporary-chat sweep tell the owner's tabs, as a delete does."""
    await TeamPolicy.objects.acreate(team=team, retention_days=30)
    socket = await connect(member)
    stranger = await connect(outsider)
    expired = await database_sync_to_async(aged)(member, team, 31)
    fleeting = await database_sync_to_async(aged)(member, team, 2, temporary=True)
    kept = await database_sync_to_async(aged)(member, team, 1)
    await database_sync_to_async(call_command)("purge_expired", stdout=io.StringIO())
    frames = await socket.until_type("conversation.deleted")
    frames += await socket.until_type("conversation.deleted")
    deleted = {f["conversation_id"] for f in frames if f["type"] == "conversation.deleted"}
    assert deleted == {expired.pk, fleeting.pk}
    assert await Conversation.objects.filter(pk=kept.pk).aexists()
    assert await socket.nothing_more()
    assert await stranger.nothing_more()


async def test_a_new_conversation_is_listed_on_the_owners_other_sockets(
    connect, member, outsider, team, sim
):
    socket = await connect(member)
    other_tab = await connect(member)
    stranger = await connect(outsider)
    ids = await finish(socket, "Plan the offsite")
    await finish(socket, "Between us", temporary=True)
    listed = (await other_tab.until_type("conversation.created"))[-1]
    assert listed == {
        "type": "conversation.created",
        "request_id": None,
        "conversation": {
            "id": ids["conversation_id"],
            "title": "Plan the offsite",
            "team_id": team.pk,
        },
    }
    assert await other_tab.nothing_more()  # not the temporary chat
    assert await socket.nothing_more()  # the asking socket had it once, before its messages
    assert await stranger.nothing_more()


def pin_as(user, conversation_id: int, pinned: bool) -> int:
    client = Client()
    client.force_login(user)
    path = f"/api/conversations/{conversation_id}/"
    return client.patch(path, {"pinned": pinned}, content_type="application/json").status_code


async def test_a_pin_reaches_every_socket_of_the_owner_only(connect, member, outsider, sim):
    socket = await connect(member)
    other_tab = await connect(member)
    stranger = await connect(outsider)
    ids = await finish(socket, "Plan the offsite")
    await other_tab.until_type("conversation.created")
    assert await database_sync_to_async(pin_as)(member, ids["conversation_id"], True) == 200
    expected = {
        "type": "conversation.pinned",
        "conversation_id": ids["conversation_id"],
        "pinned": True,
    }
    assert (await socket.until_type("conversation.pinned"))[-1] == expected
    assert (await other_tab.until_type("conversation.pinned"))[-1] == expected
    assert await stranger.nothing_more()
