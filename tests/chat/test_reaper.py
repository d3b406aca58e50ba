import asyncio
from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.core.management import call_command
from django.utils import timezone

from chatapp.asgi import application
from chatapp.chat import reaper
from chatapp.chat.actions import replies
from chatapp.chat.generation import RUNNING
from chatapp.chat.models import Conversation, Message
from chatapp.chat.requests import SendRequest
from chatapp.core import processes
from chatapp.teams import actions as team_actions
from chatapp.teams.models import (
    BudgetHold,
    RecentRequest,
    SafetyFlag,
    TeamMonthUsage,
    TeamPolicy,
    TeamUsage,
)
from chatapp.uploads.actions import create_upload
from chatapp.uploads.models import Upload
from tests.chat.conftest import joined_text
from tests.support.polling import await_for


@pytest.fixture
def conversation(team, member):
    return Conversation.objects.create(team=team, owner=member, model="m")


def streaming(conversation, seconds_ago: float, content: str = "partial") -> Message:
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=content,
        status="streaming",
        heartbeat_at=timezone.now() - timedelta(seconds=seconds_ago),
    )


def test_stale_streaming_answers_are_marked_interrupted(conversation):
    stale = streaming(conversation, 300, "kept text")
    fresh = streaming(conversation, 5)
    done = Message.objects.create(conversation=conversation, role="assistant", content="ok")
    counts = reaper.reap_stale_generations(max_age_seconds=60)
    assert counts["interrupted"] == 1
    stale.refresh_from_db()
    assert (stale.status, stale.content, stale.error_code) == (
        "interrupted",
        "kept text",
        "interrupted",
    )
    fresh.refresh_from_db()
    done.refresh_from_db()
    assert (fresh.status, done.status) == ("streaming", "complete")


def test_a_dead_processs_answers_end_at_once_and_no_others(conversation, team, member):
    """The supervisor saw the process exit: its answers end whatever their heartbeat, with
    their text and counted once (a second call finds nothing); another process's, a fresh
    heartbeat's too, and rows naming no process stay as they are."""
    dead, alive = streaming(conversation, 1, "kept text"), streaming(conversation, 1)
    unnamed = streaming(conversation, 1)
    Message.objects.filter(pk=dead.pk).update(server_process="a" * 32, reserved_tokens=10)
    Message.objects.filter(pk=alive.pk).update(server_process="b" * 32)
    reaper.end_answers_of("a" * 32)
    reaper.end_answers_of("a" * 32)
    reaper.end_answers_of("")
    statuses = dict(Message.objects.values_list("pk", "status"))
    assert statuses[alive.pk] == statuses[unnamed.pk] == "streaming"
    dead.refresh_from_db()
    assert (dead.status, dead.content, dead.error_code) == (
        "interrupted",
        "kept text",
        "interrupted",
    )
    usage = TeamUsage.objects.get(team=team, user=member)
    assert (usage.requests, usage.completion_tokens) == (1, dead.completion_tokens)


def test_a_dead_processs_budget_holds_are_released_at_once_and_no_others(team, member):
    """An API answer's hold names the process relaying it: when that process dies its holds
    go at once, counting nothing (a hold reserves, it is not usage); another process's holds,
    and those naming no process (written by an older release), stay until they end."""
    later = timezone.now() + timedelta(minutes=10)
    held = team_actions.hold_tokens(team, member, 100, lifetime=600)
    assert BudgetHold.objects.get(pk=held).server_process == processes.token()
    dead = BudgetHold.objects.create(
        team=team, user=member, tokens=200, expires_at=later, server_process="a" * 32
    )
    alive = BudgetHold.objects.create(
        team=team, user=member, tokens=300, expires_at=later, server_process="b" * 32
    )
    unnamed = BudgetHold.objects.create(team=team, user=member, tokens=400, expires_at=later)
    reaper.end_answers_of("a" * 32)
    reaper.end_answers_of("")
    assert not BudgetHold.objects.filter(pk=dead.pk).exists()
    assert set(BudgetHold.objects.values_list("pk", flat=True)) == {held, alive.pk, unnamed.pk}
    assert not TeamUsage.objects.exists() and not TeamMonthUsage.objects.exists()
    reaper.end_answers_of(processes.token())
    assert set(BudgetHold.objects.values_list("pk", flat=True)) == {alive.pk, unnamed.pk}


def test_an_answer_the_reaper_interrupts_counts_what_it_streamed(conversation, team, member):
    """Its process died mid-answer: the provider billed what it streamed (its text is kept,
    up to the last checkpoint) and its prompt. When its hold ends, what it used counts, as
    for an answer stopped or cut off mid-stream: a crash is no way around the budget."""
    conversation.max_tokens = 2048
    conversation.save(update_fields=["max_tokens"])
    stale = streaming(conversation, 300, "word " * 800)  # 4,000 characters: about 1,000 tokens
    Message.objects.filter(pk=stale.pk).update(reserved_tokens=2048 + 300)
    assert reaper.reap_stale_generations(max_age_seconds=60)["interrupted"] == 1
    usage = TeamUsage.objects.get(team=team, user=member)
    assert usage.completion_tokens >= 1000
    assert usage.prompt_tokens > 0


def test_an_answer_the_reaper_interrupts_while_its_tool_runs_counts_the_turn_that_called(
    conversation, team, member
):
    """Its process died while the tool ran, before any text: the turn that asked for the
    call was billed (its prompt and the call), and counts though the answer has no text."""
    conversation.max_tokens = 2048
    conversation.save(update_fields=["max_tokens"])
    stale = streaming(conversation, 300, "")
    call = {"id": "c1", "name": "get_weather", "arguments": '{"city": "Oslo"}'}
    Message.objects.filter(pk=stale.pk).update(
        reserved_tokens=2048 + 300, tool_calls=[{**call, "status": "running", "round": 1}]
    )
    assert reaper.reap_stale_generations(max_age_seconds=60)["interrupted"] == 1
    usage = TeamUsage.objects.get(team=team, user=member)
    assert usage.prompt_tokens == 300
    assert usage.completion_tokens > 0


def send(member, content: str, conversation_id: int | None = None) -> replies.Exchange:
    """The rows a chat.send writes as its answer starts (no generation runs them here)."""
    request = SendRequest(content=content, conversation_id=conversation_id)
    return replies.start_reply(replies.admit_send(member, None, request, "r1"))


def questions_planned_next(member, conversation_id: int) -> list[str]:
    plan = replies.admit_send(member, None, SendRequest("Something else", conversation_id), "r2")
    return [m["content"] for m in plan.messages if m["role"] == "user"]


@pytest.mark.parametrize(
    "reap",
    [
        lambda: reaper.end_answers_of(processes.token()),
        lambda: reaper.reap_stale_generations(max_age_seconds=0),
    ],
    ids=["process-exited", "heartbeat-stale"],
)
def test_a_question_whose_process_died_before_its_verdict_stays_out_of_later_requests(
    team, member, reap
):
    """The process died (SIGKILL) while Llama Guard judged the question: it never went
    upstream. The answer ends `safety_unchecked`, as a stop or the server stopping ends it,
    and the next question, which alone is screened, does not take it upstream either."""
    TeamPolicy.objects.create(team=team, safety_input="block")
    first = send(member, "The question nobody screened")
    reap()
    answer = Message.objects.get(pk=first.assistant_id)
    assert (answer.status, answer.error_code) == ("interrupted", "safety_unchecked")
    assert questions_planned_next(member, first.conversation_id) == ["Something else"]


def test_a_question_screened_before_its_process_died_goes_on_with_the_next(team, member, sim):
    """Without input screening, and once the verdict let the question through, an answer
    its process left ends `interrupted` and the question stays in the conversation."""
    first = send(member, "An unscreened team's question")
    reaper.end_answers_of(processes.token())
    answer = Message.objects.get(pk=first.assistant_id)
    assert (answer.status, answer.error_code) == ("interrupted", "interrupted")
    questions = questions_planned_next(member, first.conversation_id)
    assert questions == ["An unscreened team's question", "Something else"]


def marked_ids(found: list[replies.Abandoned]) -> list[int]:
    return [answer.message_id for answer in replies.mark_interrupted(found)]


def test_answers_another_process_marked_first_are_left_to_it(conversation):
    """Two processes reaping at once both find the stale answers; each answer is marked, and
    so announced, by only one of them."""
    first, second = streaming(conversation, 300), streaming(conversation, 300)
    found = replies.stale_replies(timezone.now() - timedelta(seconds=60), alive=[])
    assert sorted(answer.message_id for answer in found) == [first.pk, second.pk]
    assert marked_ids(found[:1]) == [first.pk]  # the other process, in between
    assert marked_ids(found) == [second.pk]
    assert marked_ids(found) == []
    assert set(Message.objects.values_list("status", flat=True)) == {"interrupted"}


def test_management_command_prints_counts(conversation):
    streaming(conversation, 600)
    out = StringIO()
    call_command("reap_generations", "--max-age", "120", stdout=out)
    assert "marked 1 interrupted" in out.getvalue()
    assert not Message.objects.filter(status="streaming").exists()


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "1e300", "soon"])
def test_management_command_refuses_a_bad_max_age(conversation, value):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--max-age: .*seconds above 0"):
        call_command("reap_generations", "--max-age", value)


@pytest.fixture
async def abandoned(team, member, settings):
    """An answer left streaming an hour ago by a process that died."""
    settings.CHAT_REAPER_INTERVAL_SECONDS = 60
    conversation = await Conversation.objects.acreate(team=team, owner=member, model="m")
    return await Message.objects.acreate(
        conversation=conversation,
        role="assistant",
        status="streaming",
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )


async def reaped(message: Message) -> bool:
    async def settled() -> bool:
        await message.arefresh_from_db()
        return message.status != "streaming"

    try:
        await await_for(settled, "the reaper's first run")  # it starts in the background
    finally:
        await reaper.stop()
    return message.status == "interrupted"


@pytest.mark.django_db(transaction=True)
async def test_each_process_reaps_when_its_first_socket_connects(connect, member, abandoned):
    socket = await connect(member)
    assert await reaped(abandoned)
    await socket.send({"type": "chat.subscribe", "conversation_id": abandoned.conversation_id})
    state = await socket.receive()
    assert state["messages"][0]["status"] == "interrupted"


@pytest.mark.django_db(transaction=True)
async def test_a_process_reaps_from_its_first_http_request(abandoned):
    health = HttpCommunicator(application, "GET", "/healthz")
    assert (await health.get_response(timeout=10))["status"] == 200
    assert await reaped(abandoned)


@pytest.mark.django_db(transaction=True)
async def test_a_tab_watching_the_answer_hears_it_was_interrupted(connect, member, team):
    conversation = await Conversation.objects.acreate(team=team, owner=member, model="m")
    message = await Message.objects.acreate(
        conversation=conversation,
        role="assistant",
        content="partial",
        status="streaming",
        model="m",
        seq=3,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    socket = await connect(member)
    await socket.send({"type": "chat.subscribe", "conversation_id": conversation.pk})
    assert (await socket.receive())["type"] == "conversation.state"
    await reaper.reap_and_announce()
    error, done = await socket.receive(), await socket.receive()
    assert (error["type"], error["message_id"]) == ("message.error", message.pk)
    assert error["error"] == {
        "code": "interrupted",
        "message": "The server stopped while answering: regenerate to try again.",
        "retryable": True,
    }
    assert (done["type"], done["status"], done["model"]) == ("message.done", "interrupted", "m")
    # What it counted, as a reload shows it.
    await message.arefresh_from_db()
    assert done["usage"] == message.usage == {"prompt_tokens": 0, "completion_tokens": 2}


@pytest.mark.django_db(transaction=True)
async def test_a_tab_watching_hears_an_answer_ended_before_its_questions_verdict(
    connect, member, team
):
    """As a stop or the server stopping says it: `safety_unchecked`, then `interrupted`."""
    await TeamPolicy.objects.acreate(team=team, safety_input="block")
    exchange = await database_sync_to_async(send)(member, "The question nobody screened")
    socket = await connect(member)
    await socket.send({"type": "chat.subscribe", "conversation_id": exchange.conversation_id})
    assert (await socket.receive())["type"] == "conversation.state"
    await database_sync_to_async(reaper.end_answers_of)(processes.token())
    error, done = await socket.receive(), await socket.receive()
    assert (error["type"], error["message_id"]) == ("message.error", exchange.assistant_id)
    assert (error["error"]["code"], error["error"]["retryable"]) == ("safety_unchecked", True)
    assert (done["type"], done["status"], done["usage"]) == ("message.done", "interrupted", None)


async def first_periodic_run_deletes(gone) -> None:
    """Start the periodic check with a request (its first run is in the background) and wait
    until the row `gone` (a queryset) is deleted, for at most 10 s; then stop it."""
    health = HttpCommunicator(application, "GET", "/healthz")
    assert (await health.get_response(timeout=10))["status"] == 200
    try:
        for _ in range(200):
            if not await gone.aexists():
                break
            await asyncio.sleep(0.05)
    finally:
        await reaper.stop()


@pytest.mark.django_db(transaction=True)
async def test_the_periodic_check_also_deletes_uploads_never_sent(team, member, settings):
    settings.CHAT_REAPER_INTERVAL_SECONDS = 60
    old = await database_sync_to_async(create_upload)(member, team, "old.md", b"# old")
    fresh = await database_sync_to_async(create_upload)(member, team, "new.md", b"# new")
    await Upload.objects.filter(pk=old.pk).aupdate(created_at=timezone.now() - timedelta(days=2))
    await first_periodic_run_deletes(Upload.objects.filter(pk=old.pk))
    assert [u.pk async for u in Upload.objects.all()] == [fresh.pk]


@pytest.mark.django_db(transaction=True)
async def test_the_periodic_check_also_deletes_expired_temporary_chats(team, member, settings):
    settings.CHAT_REAPER_INTERVAL_SECONDS = 60
    old = await Conversation.objects.acreate(team=team, owner=member, model="m", temporary=True)
    young = await Conversation.objects.acreate(team=team, owner=member, model="m", temporary=True)
    kept = await Conversation.objects.acreate(team=team, owner=member, model="m")
    two_days_ago = timezone.now() - timedelta(days=2)
    await Conversation.objects.filter(pk__in=[old.pk, kept.pk]).aupdate(created_at=two_days_ago)
    await first_periodic_run_deletes(Conversation.objects.filter(pk=old.pk))
    assert {c.pk async for c in Conversation.objects.all()} == {young.pk, kept.pk}


@pytest.mark.django_db(transaction=True)
async def test_the_periodic_check_also_deletes_expired_budget_holds(team, member, settings):
    """An API answer's hold outlives its process only until it expires: then it counts no
    more (teams.quota), and this deletes it."""
    settings.CHAT_REAPER_INTERVAL_SECONDS = 60
    now = timezone.now()
    expired = await BudgetHold.objects.acreate(
        team=team, user=member, tokens=100, expires_at=now - timedelta(seconds=1)
    )
    live = await BudgetHold.objects.acreate(
        team=team, user=member, tokens=100, expires_at=now + timedelta(minutes=10)
    )
    await first_periodic_run_deletes(BudgetHold.objects.filter(pk=expired.pk))
    assert [h.pk async for h in BudgetHold.objects.all()] == [live.pk]


@pytest.mark.django_db(transaction=True)
async def test_the_periodic_check_also_forgets_requests_older_than_the_rate_limits_minute(
    team, member, settings
):
    """A user who stops sending keeps no rows: admission prunes only the sender's own."""
    settings.CHAT_REAPER_INTERVAL_SECONDS = 60
    now = timezone.now()
    old = await RecentRequest.objects.acreate(
        team=team, user=member, created_at=now - timedelta(minutes=2)
    )
    recent = await RecentRequest.objects.acreate(team=team, user=member, created_at=now)
    await first_periodic_run_deletes(RecentRequest.objects.filter(pk=old.pk))
    assert [r.pk async for r in RecentRequest.objects.all()] == [recent.pk]


PACED = "[sim:long tokens=100] [sim:pace tps=40]"


def reap_as_another_process(message_id: int) -> None:
    """Another process's reaper, once the answer's heartbeat went stale (its process stalled
    past CHAT_STALE_GENERATION_SECONDS) with a checkpoint of text written."""
    message = Message.objects.get(pk=message_id)
    Message.objects.filter(pk=message_id).update(content="Some text so far")
    found = [replies.Abandoned(message_id, message.conversation_id, message.model)]
    assert marked_ids(found) == [message_id]


@pytest.mark.django_db(transaction=True)
async def test_an_answer_reaped_while_its_process_lives_counts_its_real_usage_once(
    connect, member, team, sim
):
    """The reaper counted an estimate; the answer then ended for real: its real figures take
    the estimate's place, one request, and the answer is saved whole with its real status."""
    socket = await connect(member)
    ids = await socket.send_message(f"Count slowly {PACED}")
    await socket.until_type("message.delta", ids["message_id"])
    await database_sync_to_async(reap_as_another_process)(ids["message_id"])
    frames = await socket.receive_until(
        lambda f: f["type"] == "message.done" and f["status"] != "interrupted"
    )
    done = frames[-1]
    assert done["status"] == "complete" and done["usage"]["completion_tokens"] > 0
    rows = [row async for row in TeamUsage.objects.filter(team=team, user=member)]
    assert [(r.prompt_tokens, r.completion_tokens, r.requests) for r in rows] == [
        (done["usage"]["prompt_tokens"], done["usage"]["completion_tokens"], 1)
    ]
    message = await Message.objects.aget(pk=ids["message_id"])
    assert (message.status, message.error_code) == ("complete", "")
    assert message.content == joined_text(socket.received, ids["message_id"])


# --- answers whose output screening the process's death cut short ---------------------------

TAIL = "Once upon a time there was a story that went on and on and on."
FLAGGED_TAIL = "[sim:flag_answer categories=S10 at=5] Tell me a story"


def left_unscreened(member, team, question: str, **policy) -> Message:
    """An answer whose process died with its last checkpoint's text not yet screened (its
    checks mid-answer and at the end never ran): its heartbeat long stale."""
    TeamPolicy.objects.update_or_create(team=team, defaults=policy)
    exchange = send(member, question)
    Message.objects.filter(pk=exchange.assistant_id).update(
        content=TAIL, seq=3, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    return Message.objects.get(pk=exchange.assistant_id)


REAPS = [
    lambda: reaper.end_answers_of(processes.token()),
    lambda: async_to_sync(reaper.reap_and_announce)(),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("reap", REAPS, ids=["process-exited", "heartbeat-stale"])
def test_a_reaped_answer_s_flagged_tail_is_blocked_and_withheld(team, member, sim, reap):
    answer = left_unscreened(member, team, FLAGGED_TAIL, safety_output="block")
    reap()
    answer.refresh_from_db()
    assert (answer.status, answer.content, answer.error_code) == ("blocked", TAIL, "")
    assert answer.safety == {
        "flagged": True,
        "categories": ["S10"],
        "stages": ["output"],
        "unscreened": [],
    }
    flag = SafetyFlag.objects.get()
    assert (flag.message_id, flag.stage, flag.blocked) == (answer.pk, "output", True)
    assert flag.categories == ["S10"]
    plan = replies.admit_send(member, None, SendRequest("More", answer.conversation_id), "r2")
    assert all(TAIL not in str(m["content"]) for m in plan.messages)  # never upstream again


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("reap", REAPS, ids=["process-exited", "heartbeat-stale"])
def test_a_reaped_answer_s_flagged_tail_goes_on_the_review_queue(team, member, sim, reap):
    answer = left_unscreened(member, team, FLAGGED_TAIL, safety_output="flag")
    reap()
    answer.refresh_from_db()
    assert (answer.status, answer.content, answer.error_code) == (
        "interrupted",
        TAIL,
        "interrupted",
    )
    assert answer.safety["flagged"] is True and answer.safety["stages"] == ["output"]
    flag = SafetyFlag.objects.get()
    assert (flag.message_id, flag.stage, flag.blocked) == (answer.pk, "output", False)


@pytest.mark.django_db(transaction=True)
def test_a_reaped_answer_is_screened_whole_with_its_question(team, member, sim):
    answer = left_unscreened(member, team, "Tell me a story", safety_output="block")
    reaper.end_answers_of(processes.token())
    answer.refresh_from_db()
    assert (answer.status, answer.error_code) == ("interrupted", "interrupted")
    assert answer.safety == {"flagged": False, "categories": [], "stages": [], "unscreened": []}
    (screened,) = sim.moderations
    assert [m["role"] for m in screened["messages"]] == ["user", "assistant"]
    assert screened["messages"][-1]["content"] == TAIL
    assert not SafetyFlag.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_reaped_answer_of_a_team_not_screening_answers_is_not_screened(team, member, sim):
    answer = left_unscreened(member, team, FLAGGED_TAIL, safety_output="off")
    reaper.end_answers_of(processes.token())
    assert not sim.moderations
    answer.refresh_from_db()
    assert (answer.status, answer.safety) == ("interrupted", None)


@pytest.mark.django_db(transaction=True)
def test_a_reaped_answer_without_text_is_not_screened(team, member, sim):
    TeamPolicy.objects.create(team=team, safety_output="block")
    exchange = send(member, FLAGGED_TAIL)
    reaper.end_answers_of(processes.token())
    assert not sim.moderations
    answer = Message.objects.get(pk=exchange.assistant_id)
    assert (answer.status, answer.safety) == ("interrupted", None)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("on_error", "status"), [("fail_open", "interrupted"), ("fail_closed", "blocked")]
)
def test_a_reaped_answer_llama_guard_cannot_judge_follows_the_team_s_failure_policy(
    team, member, sim, settings, on_error, status
):
    settings.LLAMA_MAX_ATTEMPTS = 1
    answer = left_unscreened(
        member,
        team,
        "[sim:guard_fault=503] Tell me a story",
        safety_output="flag",
        safety_on_error=on_error,
    )
    reaper.end_answers_of(processes.token())
    answer.refresh_from_db()
    assert (answer.status, answer.content) == (status, TAIL)
    assert answer.safety == {
        "flagged": False,
        "categories": [],
        "stages": [],
        "unscreened": ["output"],
    }
    assert not SafetyFlag.objects.exists()


@pytest.mark.parametrize(
    ("on_error", "status"), [("fail_open", "interrupted"), ("fail_closed", "blocked")]
)
def test_an_answer_marked_but_never_screened_stands_as_unscreened(
    team, member, sim, on_error, status
):
    """The process that marked it died before Llama Guard's verdict (or could not save it):
    the answer is as if Llama Guard had not answered, from the marking on."""
    answer = left_unscreened(
        member, team, FLAGGED_TAIL, safety_output="block", safety_on_error=on_error
    )
    replies.mark_interrupted(replies.replies_of_process(processes.token()))
    answer.refresh_from_db()
    assert (answer.status, answer.content) == (status, TAIL)
    assert answer.safety["unscreened"] == ["output"]


@pytest.mark.django_db(transaction=True)
def test_a_slow_llama_guard_does_not_hold_the_reaper(team, member, sim, monkeypatch):
    """The sweep waits SCREENING_SECONDS for the verdicts, then goes on; the answers it has
    none for stand unscreened (failing open here: shown, and said so)."""
    monkeypatch.setattr(reaper, "SCREENING_SECONDS", 0.1)
    answer = left_unscreened(
        member, team, f"[sim:guard_delay=1] {FLAGGED_TAIL}", safety_output="block"
    )
    async_to_sync(reaper.reap_and_announce)()
    answer.refresh_from_db()
    assert (answer.status, answer.error_code) == ("interrupted", "interrupted")
    assert answer.safety["unscreened"] == ["output"]


@pytest.mark.django_db(transaction=True)
async def test_a_tab_watching_a_reaped_answer_blocked_after_the_fact_hears_it(
    connect, member, team, sim
):
    answer = await database_sync_to_async(left_unscreened)(
        member, team, FLAGGED_TAIL, safety_output="block"
    )
    socket = await connect(member)
    await socket.send({"type": "chat.subscribe", "conversation_id": answer.conversation_id})
    assert (await socket.receive())["type"] == "conversation.state"
    await reaper.reap_and_announce()
    done = await socket.receive()
    assert (done["type"], done["message_id"], done["status"]) == (
        "message.done",
        answer.pk,
        "blocked",
    )
    assert done["safety"] == {
        "flagged": True,
        "categories": ["S10"],
        "stages": ["output"],
        "unscreened": [],
    }
    assert done["usage"]["completion_tokens"] > 0
    await socket.send({"type": "chat.subscribe", "conversation_id": answer.conversation_id})
    state = await socket.receive()
    withheld = [m for m in state["messages"] if m["id"] == answer.pk][0]
    assert (withheld["status"], withheld["content"]) == ("blocked", "")


@pytest.mark.django_db(transaction=True)
async def test_a_tab_watching_a_reaped_answer_flagged_after_the_fact_hears_it(
    connect, member, team, sim
):
    answer = await database_sync_to_async(left_unscreened)(
        member, team, FLAGGED_TAIL, safety_output="flag"
    )
    socket = await connect(member)
    await socket.send({"type": "chat.subscribe", "conversation_id": answer.conversation_id})
    assert (await socket.receive())["type"] == "conversation.state"
    await database_sync_to_async(reaper.end_answers_of)(processes.token())
    error, done = await socket.receive(), await socket.receive()
    assert (error["type"], error["error"]["code"]) == ("message.error", "interrupted")
    assert (done["type"], done["status"]) == ("message.done", "interrupted")
    assert done["safety"]["categories"] == ["S10"]


@pytest.mark.django_db(transaction=True)
async def test_an_answer_withheld_unscreened_by_the_reaper_while_its_process_lives_counts_once(
    connect, member, team, sim
):
    """Failing closed, the reaper withheld the answer it marked until a verdict; its process,
    only stalled, then ended it: its own status and real usage stand, counted once."""
    await TeamPolicy.objects.acreate(team=team, safety_output="flag", safety_on_error="fail_closed")
    socket = await connect(member)
    ids = await socket.send_message(f"Count slowly {PACED}")
    await socket.until_type("message.delta", ids["message_id"])
    await database_sync_to_async(reap_as_another_process)(ids["message_id"])
    assert (await Message.objects.aget(pk=ids["message_id"])).status == "blocked"
    frames = await socket.receive_until(
        lambda f: f["type"] == "message.done" and f["message_id"] == ids["message_id"]
    )
    done = frames[-1]
    assert done["status"] == "complete" and done["usage"]["completion_tokens"] > 0
    rows = [row async for row in TeamUsage.objects.filter(team=team, user=member)]
    assert [(r.prompt_tokens, r.completion_tokens, r.requests) for r in rows] == [
        (done["usage"]["prompt_tokens"], done["usage"]["completion_tokens"], 1)
    ]


# --- a question's verdict, when the answer's process dies after it --------------------------

FLAGGED_QUESTION = (
    "[sim:flag categories=S1,S10] Count slowly [sim:long tokens=400] [sim:pace tps=20]"
)
QUESTION_FLAGGED = {"flagged": True, "categories": ["S1", "S10"], "stages": ["input"]}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("output", ["off", "flag"])
async def test_a_flagged_question_s_verdict_outlives_the_answer_s_process(
    connect, member, team, sim, output
):
    """Llama Guard flagged the question (`flag`: it went upstream), then the answer's process
    stalled and another process reaped the answer as if it had died: the question is on the
    review queue already, and the answer's safety says so from the reaper's message.done on
    (its own verdict, when the team screens answers, beside it). The process, only stalled,
    then ends the answer: the question stays one flag on the queue."""
    await TeamPolicy.objects.acreate(team=team, safety_input="flag", safety_output=output)
    socket = await connect(member)
    ids = await socket.send_message(FLAGGED_QUESTION)
    await socket.until_type("message.delta", ids["message_id"])
    row = Message.objects.filter(pk=ids["message_id"])
    await row.aupdate(content="Some text so far")  # a checkpoint's
    found = [replies.Abandoned(ids["message_id"], ids["conversation_id"], "m")]
    marked = await database_sync_to_async(replies.mark_interrupted)(found)
    if output != "off":  # unscreened until Llama Guard's verdict on the answer replaces it
        assert (await row.aget()).safety == {**QUESTION_FLAGGED, "unscreened": ["output"]}
    await reaper.announce(marked)
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "interrupted"
    expected = {**QUESTION_FLAGGED, "unscreened": []}
    assert done["safety"] == (await row.aget()).safety == expected
    flag = await SafetyFlag.objects.aget()
    assert (flag.message_id, flag.stage, flag.blocked) == (ids["user_message_id"], "input", False)
    assert flag.categories == ["S1", "S10"]

    running = RUNNING[ids["message_id"]]  # only stalled, in fact: it ends here
    running.stop()
    await running.wait()
    assert (await row.aget()).safety == expected
    assert [f.pk async for f in SafetyFlag.objects.all()] == [flag.pk]
