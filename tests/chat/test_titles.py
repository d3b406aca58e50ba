"""Titles the model writes after a new conversation's first answer (chatapp.chat.titles)."""

import pytest

from chatapp.chat import titles
from chatapp.chat.generation import Generation
from chatapp.chat.models import Conversation, Message
from chatapp.teams.models import BudgetHold, TeamMonthUsage, TeamPolicy, TeamUsage

from .conftest import MODEL

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "How do I file taxes in Spain?"
SLOW = "[sim:pace tps=40]"


@pytest.fixture(autouse=True)
def titles_on(settings):
    settings.LLAMA_GENERATE_TITLES = True


# Every answer the running test started, by message id. An answer leaves RUNNING before it
# names the conversation: waiting on the one kept here waits for its title too.
STARTED: dict[int, Generation] = {}


@pytest.fixture(autouse=True)
def record_started(monkeypatch):
    STARTED.clear()
    attach = Generation.attach

    async def recording(self, exchange):
        STARTED[exchange.assistant_id] = self
        await attach(self, exchange)

    monkeypatch.setattr(Generation, "attach", recording)


async def answer_and_settle(socket, content: str, **fields) -> dict:
    """Send, then wait until the answer and whatever follows it (the title) are finished."""
    ids = await socket.send_message(content, **fields)
    await socket.until_type("message.done", ids["message_id"])
    await STARTED[ids["message_id"]].wait()
    return ids


def title_requests(sim) -> list[dict]:
    return [r for r in sim.requests if r["messages"][0]["content"] == titles.TITLE_INSTRUCTION]


async def test_model_names_the_conversation_and_every_tab_hears_it(connect, member, team, sim):
    socket = await connect(member)
    other_tab = await connect(member)  # follows no conversation
    ids = await socket.send_message(QUESTION)
    updated = await socket.until_type("conversation.updated")
    assert updated[-1]["conversation"] == {
        "id": ids["conversation_id"],
        "title": "File Taxes Spain",
    }
    heard = await other_tab.until_type("conversation.updated")
    assert heard[-1]["conversation"]["title"] == "File Taxes Spain"
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.title == "File Taxes Spain"
    [request] = title_requests(sim)
    assert not request.get("stream")
    assert request["model"] == MODEL
    assert request["max_completion_tokens"] == titles.TITLE_MAX_TOKENS
    assert QUESTION in request["messages"][1]["content"]
    answer = [m for m in socket.received if m["type"] == "message.done"][-1]
    assert "You asked" in request["messages"][1]["content"]
    # The title's tokens count as the team's usage, beside the answer's.
    row = await TeamUsage.objects.aget(team=team, user=member)
    assert row.requests == 2
    assert row.completion_tokens > answer["usage"]["completion_tokens"]


async def test_only_the_first_answer_names_it(connect, member, sim):
    socket = await connect(member)
    ids = await answer_and_settle(socket, QUESTION)
    await answer_and_settle(socket, "And in France?", conversation_id=ids["conversation_id"])
    assert len(title_requests(sim)) == 1
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.title == "File Taxes Spain"


async def test_upstream_failure_keeps_the_first_words_silently(connect, member, team, sim):
    socket = await connect(member)
    ids = await answer_and_settle(socket, "[sim:title_fault=400] Which bread rises best?")
    assert len(title_requests(sim)) == 1
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.title == "[sim:title_fault=400] Which bread rises best?"
    assert not [f for f in socket.received if f["type"] in ("conversation.updated", "error")]
    assert await socket.nothing_more()
    assert (await TeamUsage.objects.aget(team=team, user=member)).requests == 1


async def test_a_rename_is_never_overwritten(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message(f"{SLOW} {QUESTION}")
    generation = STARTED[ids["message_id"]]
    await Conversation.objects.filter(pk=ids["conversation_id"]).aupdate(title="My taxes")
    await generation.wait()
    assert len(title_requests(sim)) == 1  # asked, and its tokens counted, but not kept
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.title == "My taxes"
    assert not [f for f in socket.received if f["type"] == "conversation.updated"]


async def test_setting_off_sends_no_title_request(connect, member, sim, settings):
    settings.LLAMA_GENERATE_TITLES = False
    socket = await connect(member)
    ids = await answer_and_settle(socket, QUESTION)
    assert title_requests(sim) == []
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.title == QUESTION


async def test_temporary_chats_are_not_named(connect, member, sim):
    socket = await connect(member)
    ids = await answer_and_settle(socket, QUESTION, temporary=True)
    assert title_requests(sim) == []
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert (conversation.title, conversation.temporary) == (QUESTION, True)


@pytest.mark.parametrize(
    "reply, title",
    [
        ("File Taxes Spain", "File Taxes Spain"),
        ('Title: "Spanish tax filing."\nMore words', "Spanish tax filing"),
        ("**Bread rising**", "Bread rising"),
        ("\n\n  ", ""),
        ("word " * 40, ("word " * 16).strip()),
        # A mark that reverses what follows would make it read otherwise in the sidebar.
        ("Invoice \u202efdp.exe\u202c review", "Invoice fdp.exe review"),
        ("Tabs\tand\x00controls", "Tabs and controls"),
        # Nothing to see would be a blank in the sidebar.
        ("\u200b\u2060\nBread rising", "Bread rising"),
        ("**\u3164**", ""),
    ],
)
def test_clean_title(reply, title):
    assert titles.clean_title(reply) == title


def test_question_text_reads_text_parts_only():
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
    }
    assert titles.question_text(message) == "What is in this picture?"


def test_the_question_comes_before_its_documents_in_the_title_request():
    document = (
        '<document name="report.pdf" pages="40">\n' + "Revenue grew. " * 500 + "\n</document>"
    )
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": document},
            {"type": "text", "text": "Which quarter was best?"},
        ],
    }
    [_, quoted] = titles.title_messages(titles.question_text(message), "The third.")
    assert quoted["content"].startswith("Question:\nWhich quarter was best?\n<document")


async def stop_first_answer(socket, content: str) -> dict:
    """Send a slow question and stop its answer once text has streamed."""
    ids = await socket.send_message(f"{SLOW} {content}")
    await socket.until_type("message.delta", ids["message_id"])
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    done = await socket.until_type("message.done", ids["message_id"])
    assert done[-1]["status"] == "stopped"
    return ids


async def settle_next_answer(socket, frame: dict) -> None:
    """Send a regenerate or an edit, then wait for its answer and whatever follows it."""
    await socket.send(frame)
    frames = await socket.receive_until(
        lambda f: f["type"] == "message.created" and f["message"]["role"] == "assistant"
    )
    answer = frames[-1]["message"]["id"]
    done = await socket.until_type("message.done", answer)
    assert done[-1]["status"] == "complete"
    await STARTED[answer].wait()


async def test_a_first_answer_stopped_then_regenerated_names_it(connect, member, sim):
    socket = await connect(member)
    ids = await stop_first_answer(socket, QUESTION)
    assert title_requests(sim) == []  # a stopped answer does not name it
    await settle_next_answer(socket, {"type": "chat.regenerate", "message_id": ids["message_id"]})
    assert len(title_requests(sim)) == 1
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.title == "File Taxes Spain"
    updated = await socket.until_type("conversation.updated")
    assert updated[-1]["conversation"]["title"] == "File Taxes Spain"


async def test_a_first_answer_stopped_then_the_question_edited_names_it(connect, member, sim):
    socket = await connect(member)
    ids = await stop_first_answer(socket, "How do I file taxes?")
    edit = {"type": "chat.edit", "message_id": ids["user_message_id"], "content": QUESTION}
    await settle_next_answer(socket, edit)
    assert len(title_requests(sim)) == 1
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.title == "File Taxes Spain"


async def test_regenerating_a_named_conversations_first_answer_keeps_its_title(
    connect, member, sim
):
    socket = await connect(member)
    ids = await answer_and_settle(socket, QUESTION)
    await Conversation.objects.filter(pk=ids["conversation_id"]).aupdate(title="My taxes")
    await settle_next_answer(socket, {"type": "chat.regenerate", "message_id": ids["message_id"]})
    assert len(title_requests(sim)) == 1  # the first answer's only
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.title == "My taxes"


async def test_a_title_waits_for_room_in_the_teams_budget(connect, member, team, sim):
    """An answer may pass the team's monthly budget by what it held, as any answer started
    alone may; its title, held by nothing, would pass it by more. A title asks only while the
    budget has room, and holds its tokens as an answer does; once the answer has used the
    budget, the conversation keeps its first words."""
    await TeamPolicy.objects.acreate(team=team, monthly_token_budget=30)
    socket = await connect(member)
    ids = await answer_and_settle(socket, QUESTION, settings={"max_tokens": 20})
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert answer.finish_reason == "length"
    assert title_requests(sim) == []
    month = await TeamMonthUsage.objects.aget(team=team, user=member)
    assert month.prompt_tokens + month.completion_tokens == answer.reserved_tokens
    assert (await Conversation.objects.aget(pk=ids["conversation_id"])).title == QUESTION
    assert not await BudgetHold.objects.aexists()


async def test_a_title_under_a_budget_with_room_counts_and_leaves_no_hold(
    connect, member, team, sim
):
    await TeamPolicy.objects.acreate(team=team, monthly_token_budget=100_000)
    socket = await connect(member)
    failed = await answer_and_settle(socket, "[sim:title_fault=400] Which bread rises best?")
    assert not await BudgetHold.objects.aexists()  # a failed request gives its hold back
    named = await answer_and_settle(socket, QUESTION)
    assert len(title_requests(sim)) == 2
    assert (await Conversation.objects.aget(pk=named["conversation_id"])).title == (
        "File Taxes Spain"
    )
    assert (await Conversation.objects.aget(pk=failed["conversation_id"])).title.startswith("[sim")
    assert not await BudgetHold.objects.aexists()
    assert (await TeamUsage.objects.aget(team=team, user=member)).requests == 3
