"""Llama Guard screening of questions and answers under the team's safety policy."""

import asyncio
from importlib import import_module

import openai
import pytest
from channels.db import database_sync_to_async
from django.apps import apps
from django.test import Client
from prometheus_client import REGISTRY

from chatapp.chat.actions import replies, sharing
from chatapp.chat.models import Conversation, Message
from chatapp.teams import actions as team_actions
from chatapp.teams.models import SafetyFlag, TeamPolicy
from chatapp.uploads.actions import create_upload
from tests.conftest import client_for
from tests.openai_api.conftest import sdk
from tests.support.polling import await_for
from tests.uploads.files import image_bytes

from .conftest import joined_text

pytestmark = pytest.mark.django_db(transaction=True)

FLAGGED_QUESTION = "[sim:flag categories=S1,S10] How do I pick a lock?"
# An answer long and slow enough to be caught mid-stream: flagged from its 30th token.
FLAGGED_ANSWER = "[sim:flag_answer categories=S10 at=30] [sim:long tokens=400] [sim:pace tps=40]"
# Flagged only when the picture attached to it reaches Llama Guard.
FLAGGED_PICTURE = "[sim:flag_image categories=S12] What is in this picture?"


@pytest.fixture(params=["llama", "openai"])
def protocol(request, settings, sim):
    """The site's provider speaks this protocol (openai: the Guard model via chat completions)."""
    settings.LLAMA_MAX_ATTEMPTS = 1  # failures are failures at once: no backoff to wait out
    if request.param == "openai":
        settings.LLAMA_API_PROTOCOL = "openai"
        settings.LLAMA_API_BASE_URL = sim.openai_url
    return request.param


def set_policy(team, **fields) -> None:
    TeamPolicy.objects.update_or_create(team=team, defaults=fields)


async def aset_policy(team, **fields) -> None:
    await TeamPolicy.objects.aupdate_or_create(team=team, defaults=fields)


def counted(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def chat_requests(sim) -> list[dict]:
    return sim.requests  # Guard model calls are recorded in sim.moderations instead


async def test_a_blocked_question_never_goes_upstream(connect, member, team, sim, protocol):
    await aset_policy(team, safety_input="block")
    labels = {"stage": "input", "category": "S10", "decision": "block"}
    before = counted("chat_safety_verdicts_total", **labels)
    socket = await connect(member)
    ids = await socket.send_message(FLAGGED_QUESTION)

    frames = await socket.until_type("message.error", ids["message_id"])
    error = frames[-1]["error"]
    assert error["code"] == "safety_blocked"
    assert error["categories"] == ["S1", "S10"]
    assert "safety policy" in error["message"] and "S10 Hate" in error["message"]
    assert error["retryable"] is False
    assert chat_requests(sim) == []
    assert len(sim.moderations) == 1
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert (answer.status, answer.prompt_tokens) == ("error", None)
    flag = await SafetyFlag.objects.aget()
    assert (flag.message_id, flag.stage, flag.blocked) == (ids["user_message_id"], "input", True)
    assert flag.categories == ["S1", "S10"]
    await await_for(
        lambda: counted("chat_safety_verdicts_total", **labels) == before + 1,
        "the Prometheus counter",
    )


async def test_a_flagged_question_is_answered_and_marked(connect, member, team, sim, protocol):
    await aset_policy(team, safety_input="flag")
    socket = await connect(member)
    ids = await socket.send_message(FLAGGED_QUESTION)

    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    assert done["safety"] == {
        "flagged": True,
        "categories": ["S1", "S10"],
        "stages": ["input"],
        "unscreened": [],
    }
    assert len(chat_requests(sim)) == 1
    flag = await SafetyFlag.objects.aget()
    assert (flag.message_id, flag.blocked) == (ids["user_message_id"], False)


async def regenerate(socket, message_id: int) -> dict:
    """chat.regenerate of an answer, through to the new answer's message.done."""
    await socket.send({"type": "chat.regenerate", "request_id": "r2", "message_id": message_id})
    created = await socket.receive_until(lambda f: f["type"] == "message.created")
    return (await socket.until_type("message.done", created[-1]["message"]["id"]))[-1]


async def test_a_question_screened_again_stays_one_flag_on_the_review_queue(
    connect, member, team, sim
):
    await aset_policy(team, safety_input="flag")
    socket = await connect(member)
    ids = await socket.send_message(FLAGGED_QUESTION)
    await socket.until_type("message.done", ids["message_id"])
    await regenerate(socket, ids["message_id"])
    await aset_policy(team, safety_input="block", safety_categories=["S10"])
    await socket.send(
        {"type": "chat.regenerate", "request_id": "r3", "message_id": ids["message_id"]}
    )
    await socket.until_type("message.error")

    flag = await SafetyFlag.objects.aget()  # one question, one flag: blocked once it was
    assert (flag.message_id, flag.stage, flag.blocked) == (ids["user_message_id"], "input", True)
    assert flag.categories == ["S1", "S10"]


async def test_categories_the_team_left_out_do_not_count(connect, member, team, sim, protocol):
    await aset_policy(team, safety_input="block", safety_categories=["S2", "S3"])
    socket = await connect(member)
    ids = await socket.send_message(FLAGGED_QUESTION)

    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    assert done["safety"]["flagged"] is False
    assert not await SafetyFlag.objects.aexists()


async def send_picture(socket, member, team) -> dict:
    picture = await database_sync_to_async(create_upload)(member, team, "p.png", image_bytes())
    return await socket.send_message(FLAGGED_PICTURE, attachments=[picture.pk])


def images_screened(sim) -> int:
    content = [m["content"] for m in sim.moderations[-1]["messages"]]
    return sum(p["type"] == "image_url" for c in content if isinstance(c, list) for p in c)


async def test_a_question_s_picture_is_screened_with_it(connect, member, team, sim, protocol):
    await aset_policy(team, safety_input="block")
    socket = await connect(member)
    ids = await send_picture(socket, member, team)

    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    assert (error["code"], error["categories"]) == ("safety_blocked", ["S12"])
    assert "S12 Sexual Content" in error["message"]
    assert chat_requests(sim) == []
    assert images_screened(sim) == 1


async def test_an_answer_is_screened_without_the_question_s_picture(
    connect, member, team, sim, protocol
):
    await aset_policy(team, safety_output="block")
    socket = await connect(member)
    ids = await send_picture(socket, member, team)

    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert (done["status"], done["safety"]["flagged"]) == ("complete", False)
    assert images_screened(sim) == 0
    assert len(chat_requests(sim)) == 1


async def test_a_guard_model_that_sees_no_images_screens_the_text(
    connect, member, team, sim, protocol, settings
):
    """Off LLAMA_IMAGE_MODELS, an OpenAI-compatible provider's Guard model (which would refuse
    them) is sent no images; the native /moderations always takes them."""
    settings.LLAMA_GUARD_MODEL = "Llama-Guard-3-8B"
    await aset_policy(team, safety_input="flag")
    socket = await connect(member)
    ids = await send_picture(socket, member, team)

    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    assert done["safety"]["unscreened"] == []
    assert done["safety"]["flagged"] is (protocol == "llama")
    assert images_screened(sim) == (1 if protocol == "llama" else 0)


async def test_off_sends_nothing_to_moderation(connect, member, team, sim, protocol):
    socket = await connect(member)
    ids = await socket.send_message(FLAGGED_QUESTION)

    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    assert "safety" not in done
    assert sim.moderations == []


async def test_a_blocked_answer_stops_mid_stream_and_is_withheld(
    connect, member, team, sim, protocol
):
    await aset_policy(team, safety_output="block")
    socket = await connect(member)
    ids = await socket.send_message(f"Tell me a story {FLAGGED_ANSWER}")
    message_id = ids["message_id"]

    done = (await socket.until_type("message.done", message_id))[-1]
    assert done["status"] == "blocked"
    assert done["safety"] == {
        "flagged": True,
        "categories": ["S10"],
        "stages": ["output"],
        "unscreened": [],
    }
    shown = joined_text(socket.received, message_id)
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close")
    answer = await Message.objects.aget(pk=message_id)
    assert answer.status == "blocked"
    assert answer.content == shown  # kept for the team's reviewers
    assert 30 <= len(answer.content.split()) < 300  # stopped long before the 400th token
    flag = await SafetyFlag.objects.aget()
    assert (flag.message_id, flag.stage, flag.blocked) == (message_id, "output", True)

    reloaded = await connect(member)
    await reloaded.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = await reloaded.receive()
    withheld = [m for m in state["messages"] if m["id"] == message_id][0]
    assert (withheld["status"], withheld["content"]) == ("blocked", "")
    assert withheld["safety"]["categories"] == ["S10"]


def test_the_api_withholds_a_blocked_answer_and_does_not_search_it(member, team):

    conversation = Conversation.objects.create(team=team, owner=member, title="Story")
    Message.objects.create(conversation=conversation, role="user", content="Tell me a story")
    Message.objects.create(
        conversation=conversation, role="assistant", content="Once upon a zebra", status="blocked"
    )
    client = client_for(Client(), member)

    data = client.get(f"/api/conversations/{conversation.pk}/").json()
    assert [m["content"] for m in data["messages"]] == ["Tell me a story", ""]
    assert data["messages"][1]["status"] == "blocked"
    assert client.get("/api/conversations/?q=zebra").json()["results"] == []
    export = client.get(f"/api/conversations/{conversation.pk}/export?format=md")
    assert b"zebra" not in export.content


async def test_a_flagged_answer_is_shown_and_marked(connect, member, team, sim, protocol):
    await aset_policy(team, safety_output="flag")
    socket = await connect(member)
    ids = await socket.send_message("[sim:flag_answer categories=S6] Which pills?")

    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    assert done["safety"]["stages"] == ["output"]
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert "Which pills?" in joined_text(socket.received, ids["message_id"])
    assert answer.content == joined_text(socket.received, ids["message_id"])


async def test_fail_open_answers_and_says_it_was_not_screened(connect, member, team, sim, protocol):
    await aset_policy(team, safety_input="block", safety_output="block")
    socket = await connect(member)
    before = counted("chat_safety_failures_total", stage="input", outcome="fail_open")
    ids = await socket.send_message("[sim:guard_fault=503] Hello")

    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    assert done["safety"] == {
        "flagged": False,
        "categories": [],
        "stages": [],
        "unscreened": ["input", "output"],
    }
    assert len(chat_requests(sim)) == 1
    await await_for(
        lambda: (
            counted("chat_safety_failures_total", stage="input", outcome="fail_open") == before + 1
        ),
        "the Prometheus counter",
    )


async def test_a_flag_mid_answer_stands_when_the_check_at_the_end_fails(
    connect, member, team, sim, settings
):
    """Only flagging, the answer was flagged mid-stream; Llama Guard failing at the end
    leaves it flagged and on the review queue, marked unscreened as well."""
    settings.LLAMA_MAX_ATTEMPTS = 1
    await aset_policy(team, safety_output="flag")
    socket = await connect(member)
    ids = await socket.send_message(
        "[sim:flag_answer categories=S10 at=5] [sim:long tokens=200] [sim:pace tps=40]"
    )
    # A second check starts only once the first has its verdict.
    await await_for(lambda: len(sim.moderations) >= 2, "two checks mid-answer")
    sim.app.api_key = "another-key"  # from now on Llama Guard refuses every check

    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    assert done["safety"] == {
        "flagged": True,
        "categories": ["S10"],
        "stages": ["output"],
        "unscreened": ["output"],
    }
    flag = await SafetyFlag.objects.aget()
    assert (flag.message_id, flag.stage, flag.blocked) == (ids["message_id"], "output", False)


async def test_fail_closed_refuses_an_unscreened_question(connect, member, team, sim, protocol):
    await aset_policy(team, safety_input="flag", safety_on_error="fail_closed")
    socket = await connect(member)
    ids = await socket.send_message("[sim:guard_fault=500] Hello")

    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    assert error["code"] == "safety_unavailable"
    assert error["retryable"] is True
    assert chat_requests(sim) == []


async def test_fail_closed_refuses_a_question_flagged_in_categories_llama_guard_has_not(
    connect, member, team, sim
):
    await aset_policy(team, safety_input="block", safety_on_error="fail_closed")
    socket = await connect(member)
    ids = await socket.send_message("[sim:flag categories=violent_crimes] Hello")

    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    assert error["code"] == "safety_unavailable"
    assert chat_requests(sim) == []


async def test_fail_closed_withholds_an_answer_that_could_not_be_screened(
    connect, member, team, sim, protocol
):
    await aset_policy(team, safety_output="flag", safety_on_error="fail_closed")
    socket = await connect(member)
    ids = await socket.send_message("[sim:guard_fault=502] Hello")

    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "blocked"
    assert done["safety"]["unscreened"] == ["output"]
    assert done["safety"]["flagged"] is False


async def questions_sent_next(socket, conversation_id: int, sim) -> list[str]:
    """Ask "Something else" in the conversation; the questions its request sent upstream."""
    await socket.send(
        {
            "type": "chat.send",
            "request_id": "r2",
            "conversation_id": conversation_id,
            "content": "Something else",
        }
    )
    frames = await socket.receive_until(lambda f: f["type"] == "message.done")
    assert frames[-1]["status"] == "complete"
    return [m["content"] for m in sim.requests[-1]["messages"]]


async def test_a_blocked_question_stays_out_of_later_requests(connect, member, team, sim):
    await aset_policy(team, safety_input="block")
    socket = await connect(member)
    ids = await socket.send_message(FLAGGED_QUESTION)
    await socket.until_type("message.error", ids["message_id"])
    assert await questions_sent_next(socket, ids["conversation_id"], sim) == ["Something else"]


async def test_a_question_refused_unscreened_stays_out_of_later_requests(
    connect, member, team, sim
):
    """Failing closed, a question Llama Guard could not judge is not sent: not with the next
    question either, which alone is screened."""
    await aset_policy(team, safety_input="block", safety_on_error="fail_closed")
    socket = await connect(member)
    ids = await socket.send_message("[sim:guard_fault=503] The question nobody screened")
    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    assert error["code"] == "safety_unavailable"
    assert await questions_sent_next(socket, ids["conversation_id"], sim) == ["Something else"]


async def test_a_question_stopped_before_its_verdict_stays_out_of_later_requests(
    connect, member, team, sim
):
    """Stopped while Llama Guard judged it, a question was never screened, nor sent: the next
    question, which alone is screened, does not take it upstream either."""
    await aset_policy(team, safety_input="block")
    socket = await connect(member)
    ids = await socket.send_message(f"[sim:guard_delay=30] {FLAGGED_QUESTION}")
    await await_for(lambda: len(sim.moderations) == 1, "the question's check")
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    frames = await socket.until_type("message.done", ids["message_id"])
    assert frames[-1]["status"] == "stopped"
    error = next(f["error"] for f in frames if f["type"] == "message.error")
    assert (error["code"], error["retryable"]) == ("safety_unchecked", True)
    assert chat_requests(sim) == []

    assert await questions_sent_next(socket, ids["conversation_id"], sim) == ["Something else"]


async def test_a_question_awaiting_its_verdict_is_marked_unchecked_in_its_answers_row(
    connect, member, team, sim
):
    """Written with the rows, before Llama Guard is asked: a process killed now leaves the
    question out of later requests (tests/chat/test_reaper.py). A tab loading the
    conversation meanwhile sees an answer streaming, with no error."""
    await aset_policy(team, safety_input="block")
    socket = await connect(member)
    ids = await socket.send_message("[sim:guard_delay=30] The question being judged")
    await await_for(lambda: len(sim.moderations) == 1, "the question's check")
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert (answer.status, answer.error_code) == ("streaming", "safety_unchecked")
    await socket.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = (await socket.until_type("conversation.state"))[-1]
    shown = next(m for m in state["messages"] if m["id"] == ids["message_id"])
    assert shown["status"] == "streaming" and "error" not in shown
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    await socket.until_type("message.done", ids["message_id"])


async def test_a_questions_verdict_is_recorded_before_it_goes_upstream(connect, member, team, sim):
    """Once Llama Guard let it through, the answer's row no longer says unchecked by the time
    the chat request starts: a process killed mid-answer leaves an answer `interrupted`."""
    await aset_policy(team, safety_input="flag")
    socket = await connect(member)
    ids = await socket.send_message("[sim:long tokens=200] [sim:pace tps=10] Count slowly")
    await await_for(lambda: len(chat_requests(sim)) == 1, "the chat request")
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert (answer.status, answer.error_code) == ("streaming", "")
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    await socket.until_type("message.done", ids["message_id"])


async def test_a_blocked_questions_verdict_is_recorded_before_the_answers_end(
    connect, member, team, sim, monkeypatch
):
    """As a question let through: a process that dies before the answer's end is written
    leaves the verdict on the answer's row and the question on the review queue."""
    await aset_policy(team, safety_input="block")
    ended = asyncio.Event()

    async def dies(*args, **kwargs):
        ended.set()
        raise RuntimeError("the process died before the answer's end was written")

    monkeypatch.setattr(replies, "finish_reply", dies)
    socket = await connect(member)
    ids = await socket.send_message(FLAGGED_QUESTION)
    await asyncio.wait_for(ended.wait(), 60)
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert (answer.status, answer.error_code) == ("streaming", "")
    assert (answer.safety["stages"], answer.safety["categories"]) == (["input"], ["S1", "S10"])
    flag = await SafetyFlag.objects.aget()
    assert (flag.message_id, flag.stage, flag.blocked) == (ids["user_message_id"], "input", True)
    assert chat_requests(sim) == []


async def test_redacted_data_never_reaches_the_simulator(connect, member, team, sim, protocol):
    await aset_policy(team, data_email="redact", data_card="redact", safety_input="flag")
    socket = await connect(member)
    text = "Email ann@example.com about card 4111 1111 1111 1111, and ann@example.com again"
    ids = await socket.send_message(text)

    created = [f for f in ids["frames"] if f["type"] == "message.created"][0]["message"]
    assert created["content"] == text  # the author's own message keeps the original
    assert created["redactions"] == [
        {"placeholder": "[EMAIL_1]", "label": "e-mail address"},
        {"placeholder": "[CARD_1]", "label": "card number"},
    ]
    await socket.until_type("message.done", ids["message_id"])
    sent = sim.requests[-1]["messages"][-1]["content"]
    assert sent == "Email [EMAIL_1] about card [CARD_1], and [EMAIL_1] again"
    assert "ann@example.com" not in str(sim.moderations)  # Llama Guard gets the redacted text
    question = await Message.objects.aget(pk=ids["user_message_id"])
    assert question.content == text


async def test_a_blocked_data_kind_refuses_the_question_before_anything(connect, member, team, sim):
    await aset_policy(team, data_private_key="block")
    socket = await connect(member)
    pem = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"

    error = await socket.expect_error(
        {"type": "chat.send", "request_id": "r1", "conversation_id": None, "content": pem}
    )
    assert error["error"]["code"] == "data_blocked"
    assert "private key" in error["error"]["message"]
    assert sim.requests == [] and sim.moderations == []
    assert not await Message.objects.aexists()


async def test_a_members_own_system_prompt_meets_the_data_filter_too(connect, member, team, sim):
    """docs/safety.md: the filter "runs before anything is sent upstream". A system prompt the
    member wrote is their text as a question is: a `block` kind in it refuses the message
    before anything is sent, a `redact` kind goes upstream as its placeholder. The team's own
    prompts, written by its admins, go as they are."""
    await aset_policy(team, data_private_key="block", data_email="redact")
    socket = await connect(member)
    pem = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"
    error = await socket.expect_error(
        {
            "type": "chat.send",
            "request_id": "r1",
            "conversation_id": None,
            "content": "Hello",
            "settings": {"system_prompt": f"Sign with {pem}"},
        }
    )
    assert error["error"]["code"] == "data_blocked"
    assert sim.requests == [] and sim.moderations == []
    ids = await socket.send_message("Hello", settings={"system_prompt": "Reply to ann@example.com"})
    await socket.until_type("message.done", ids["message_id"])
    assert sim.requests[-1]["messages"][0] == {"role": "system", "content": "Reply to [EMAIL_1]"}


async def test_a_team_pattern_matches_in_linear_time_and_an_unusable_one_refuses(
    connect, member, team, sim
):
    """`(a+)+$` backtracks exponentially in Python's `re`: this question alone would hold the
    process for hours. A stored pattern RE2 refuses (lookbehind) refuses the question."""
    evil = {"name": "RUN", "pattern": "(a+)+$", "action": "block"}
    await aset_policy(team, data_patterns=[evil])
    socket = await connect(member)
    question = "a" * 60 + "!"
    ids = await socket.send_message(question)
    await socket.until_type("message.done", ids["message_id"])
    assert sim.requests[-1]["messages"][-1]["content"] == question
    error = await socket.expect_error(
        {"type": "chat.send", "request_id": "r2", "conversation_id": None, "content": "a" * 60}
    )
    assert error["error"]["code"] == "data_blocked" and "run" in error["error"]["message"]

    behind = {"name": "OLD", "pattern": "(?<=id:)\\d+", "action": "redact"}
    await aset_policy(team, data_patterns=[behind])
    error = await socket.expect_error(
        {"type": "chat.send", "request_id": "r3", "conversation_id": None, "content": "id:42"}
    )
    assert error["error"]["code"] == "data_blocked"
    assert "(OLD) that can no longer be used" in error["error"]["message"]
    assert len(sim.requests) == 1 and await Message.objects.acount() == 2


async def test_a_pending_moderation_call_does_not_hold_the_tokens(
    connect, member, team, sim, settings
):
    """The first check mid-answer never answers (it gives up after LLAMA_GUARD_TIMEOUT), and
    frames keep coming meanwhile. Were they held, the stream would pause until that check gave
    up, and the frame after the pause would start a second check."""
    settings.LLAMA_MAX_ATTEMPTS = 1
    settings.LLAMA_GUARD_TIMEOUT = 8
    await aset_policy(team, safety_output="block")
    socket = await connect(member)
    ids = await socket.send_message("[sim:guard_delay=60] [sim:long tokens=400] [sim:pace tps=40]")
    message_id = ids["message_id"]

    after_check: list[dict] = []

    def ten_frames_after_the_first_check(frame: dict) -> bool:
        if frame["type"] == "message.delta" and frame["message_id"] == message_id:
            if after_check or sim.moderations:
                after_check.append(frame)
        return len(after_check) >= 10

    await socket.receive_until(ten_frames_after_the_first_check)
    assert len(sim.moderations) == 1  # the first check, still waiting for its verdict
    await socket.send({"type": "chat.stop", "message_id": message_id})
    done = (await socket.until_type("message.done", message_id))[-1]
    assert done["status"] == "stopped"
    assert done["safety"]["unscreened"] == ["output"]  # fail_open: shown, marked unscreened


def share_and_continue(user, team, conversation_id: int) -> int:
    """Share the conversation with its team and "Continue in my chats": the copy's id."""

    conversation = Conversation.objects.select_related("team").get(pk=conversation_id)
    share = sharing.share_conversation(user, conversation, "team")
    return sharing.fork_share(user, share, team).pk


@pytest.mark.parametrize(
    ("question", "code", "policy"),
    [
        (FLAGGED_QUESTION, "safety_blocked", {}),
        (
            "[sim:guard_fault=503] The question nobody screened",
            "safety_unavailable",
            {"safety_on_error": "fail_closed"},
        ),
    ],
    ids=["blocked", "refused-unscreened"],
)
async def test_a_refused_question_stays_out_of_a_conversation_continued_from_a_share(
    connect, member, team, sim, settings, question, code, policy
):
    """Continue in my chats copies the refused question (its flag stays with the original):
    it must still never go upstream, where only the newest question is screened."""
    settings.LLAMA_MAX_ATTEMPTS = 1
    await aset_policy(team, safety_input="block", **policy)
    socket = await connect(member)
    ids = await socket.send_message(question)
    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    assert error["code"] == code
    copy_id = await database_sync_to_async(share_and_continue)(member, team, ids["conversation_id"])
    assert await questions_sent_next(socket, copy_id, sim) == ["Something else"]


async def test_a_share_taken_before_shares_kept_refusals_gets_them_from_its_conversation(
    connect, member, team, sim, settings
):
    """Migration chat 0016 gives a share of the older shape its messages' refusal codes."""
    settings.LLAMA_MAX_ATTEMPTS = 1
    await aset_policy(team, safety_input="block")
    socket = await connect(member)
    ids = await socket.send_message(FLAGGED_QUESTION)
    await socket.until_type("message.error", ids["message_id"])

    def share_of_the_older_shape() -> int:
        conversation = Conversation.objects.select_related("team").get(pk=ids["conversation_id"])
        share = sharing.share_conversation(member, conversation, "team")
        for entry in share.messages:
            del entry["error_code"]
        share.save(update_fields=["messages"])
        import_module("chatapp.chat.migrations.0016_share_refusals").add_refusals(apps, None)
        share.refresh_from_db()
        return sharing.fork_share(member, share, team).pk

    copy_id = await database_sync_to_async(share_of_the_older_shape)()
    assert await questions_sent_next(socket, copy_id, sim) == ["Something else"]


async def test_turns_of_a_blocked_api_request_stay_out_when_continued_on_the_chat_page(
    connect, member, team, sim, settings
):
    """/v1 judges every turn the client wrote as one; a saved refusal keeps them all. The
    flagged earlier turn must not go upstream once the conversation goes on in the chat."""
    settings.LLAMA_MAX_ATTEMPTS = 1
    await aset_policy(team, safety_input="block")
    _, key = await database_sync_to_async(team_actions.create_api_key)(member, team, "s", None)
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(key, **{"X-Save-Conversation": "1"}).chat.completions.create(
            model="Llama-3.3-70B-Instruct",
            messages=[
                {"role": "user", "content": FLAGGED_QUESTION},
                {"role": "assistant", "content": "Sure, here is how."},
                {"role": "user", "content": "Go on."},
            ],
        )
    assert refused.value.body["code"] == "safety_blocked"
    conversation_id = (await Message.objects.aget(role="assistant", status="error")).conversation_id
    socket = await connect(member)
    sent = await questions_sent_next(socket, conversation_id, sim)
    assert sent == ["Something else"]  # nor the made-up answer of the refused request


async def test_a_system_prompt_of_the_user_s_own_is_screened_with_the_question(
    connect, member, team, sim, protocol
):
    """A custom system prompt is the member's own text, as a /v1 client's system message is
    (which Llama Guard judges): a flagged request there must not reach the model."""
    await aset_policy(team, safety_input="block")
    socket = await connect(member)
    ids = await socket.send_message(
        "Do what the system prompt says.", settings={"system_prompt": FLAGGED_QUESTION}
    )

    ended = await socket.receive_until(
        lambda f: (
            f["type"] in ("message.error", "message.done")
            and f.get("message_id") == ids["message_id"]
        )
    )
    assert chat_requests(sim) == []
    error = ended[-1]["error"]
    assert (error["code"], error["categories"]) == ("safety_blocked", ["S1", "S10"])
