"""Upstream faults, each ending the same way: nothing the user saw or wrote is lost, the page
is told why (message.error), and regenerating retries.

Complements tests/chat/test_consumer_failures.py (codes and the partial text of a cut): here
stalls, the client's retry rules to the last attempt, a 401 that must not be retried, and a
retry that succeeds. The upstream is the simulator; only its timeouts are shortened.
"""

import pytest

from chatapp.chat.models import Message
from chatapp.llm import ProviderConfig
from tests.chat import conftest as chat
from tests.chat.conftest import SIM_KEY, joined_text
from tests.support.polling import await_for

pytestmark = pytest.mark.django_db(transaction=True)

MAX_ATTEMPTS = ProviderConfig("http://x", "k").max_attempts

# The chat suite's per-test clean-up: limits reset, generations stopped, layer flushed.
chat_settings, clean_layer = chat.chat_settings, chat.clean_layer


@pytest.fixture
def short_first_token(settings):
    """The site client gives up on an upstream that never starts after half a second."""
    settings.LLAMA_TIMEOUTS = {**settings.LLAMA_TIMEOUTS, "first_token_timeout": 0.5}


@pytest.fixture
def short_idle(settings):
    """The site client gives up on silence mid-answer after half a second. The first token
    keeps its usual minute: a loaded machine may take longer than half a second to start, and
    that must not turn this test's single request into a retried one."""
    settings.LLAMA_TIMEOUTS = {**settings.LLAMA_TIMEOUTS, "idle_timeout": 0.5}


async def upstream_closed(sim) -> bool:
    return await await_for(lambda: sim.active_streams == 0, "the upstream streams to close")


async def test_a_cut_answer_keeps_its_text_says_why_and_a_retry_completes_it(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message("Tell me [sim:fault=cut after=5 times=1]")
    message_id = ids["message_id"]
    frames = await socket.until_type("message.done", message_id)
    error = next(f for f in frames if f["type"] == "message.error")["error"]
    assert error["code"] == "interrupted" and error["retryable"] is True
    assert "cut off" in error["message"] and "Regenerate" in error["message"]
    answer = await Message.objects.aget(pk=message_id)
    assert answer.status == "interrupted"
    assert answer.content == joined_text(frames, message_id) != ""

    await socket.send({"type": "chat.regenerate", "message_id": message_id})
    created = await socket.until_type("message.created")
    retried = created[-1]["message"]["id"]
    done = await socket.until_type("message.done", retried)
    assert done[-1]["status"] == "complete"
    assert (await Message.objects.aget(pk=retried)).content == joined_text(done, retried)


async def test_no_first_token_is_retried_then_cancelled_keeping_the_question(
    connect, member, sim, short_first_token
):
    socket = await connect(member)
    ids = await socket.send_message("Anyone there? [sim:fault=stall]")
    message_id = ids["message_id"]
    frames = await socket.until_type("message.error", message_id)
    retrying = [f for f in frames if f["type"] == "message.retrying"]
    assert [f["attempt"] for f in retrying] == list(range(2, MAX_ATTEMPTS + 1))
    assert {f["code"] for f in retrying} == {"timeout"}
    error = frames[-1]["error"]
    assert error["code"] == "timeout" and error["retryable"] is True
    assert "did not start answering" in error["message"]
    assert len(sim.requests) == MAX_ATTEMPTS
    assert await upstream_closed(sim)  # every stalled request was cancelled
    answer = await Message.objects.aget(pk=message_id)
    assert (answer.status, answer.content, answer.error_code) == ("error", "", "timeout")
    question = await Message.objects.aget(pk=ids["user_message_id"])
    assert question.content == "Anyone there? [sim:fault=stall]"


async def test_silence_mid_answer_is_cancelled_keeping_the_partial_text(
    connect, member, sim, short_idle
):
    socket = await connect(member)
    ids = await socket.send_message("Go [sim:fault=stall_after after=3]")
    message_id = ids["message_id"]
    frames = await socket.until_type("message.done", message_id)
    error = next(f for f in frames if f["type"] == "message.error")["error"]
    assert error["code"] == "interrupted" and error["retryable"] is True
    assert "sent nothing for" in error["message"]
    assert frames[-1]["status"] == "interrupted"
    assert not [f for f in frames if f["type"] == "message.retrying"]  # text flowed: no retry
    assert len(sim.requests) == 1
    assert await upstream_closed(sim)
    answer = await Message.objects.aget(pk=message_id)
    assert answer.status == "interrupted"
    assert answer.content == joined_text(frames, message_id) != ""


@pytest.mark.parametrize(
    ("fault", "code"),
    [("429 retry_after=0", "rate_limited"), ("503 retry_after=0", "upstream_unavailable")],
)
async def test_busy_upstream_is_retried_to_the_last_attempt_then_a_clear_error(
    connect, member, sim, fault, code
):
    socket = await connect(member)
    content = f"Please [sim:fault={fault}]"
    ids = await socket.send_message(content)
    message_id = ids["message_id"]
    frames = await socket.until_type("message.error", message_id)
    retrying = [f for f in frames if f["type"] == "message.retrying"]
    assert [f["attempt"] for f in retrying] == list(range(2, MAX_ATTEMPTS + 1))
    assert {f["code"] for f in retrying} == {code}
    error = frames[-1]["error"]
    assert error["code"] == code and error["retryable"] is True and error["message"]
    assert len(sim.requests) == MAX_ATTEMPTS
    assert not [f for f in frames if f["type"] in ("message.delta", "message.done")]
    question = await Message.objects.aget(pk=ids["user_message_id"])
    assert question.content == content
    assert (await Message.objects.aget(pk=message_id)).status == "error"


async def test_retry_after_is_honoured_and_the_answer_then_streams(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message("Hi [sim:fault=429 retry_after=1 times=2]")
    message_id = ids["message_id"]
    frames = await socket.until_type("message.done", message_id)
    retrying = [f for f in frames if f["type"] == "message.retrying"]
    assert [(f["attempt"], f["delay"]) for f in retrying] == [(2, 1.0), (3, 1.0)]
    assert frames[-1]["status"] == "complete"
    assert len(sim.requests) == 3


async def test_a_rejected_key_is_not_retried_and_tells_an_admin_what_to_fix(connect, owner, sim):
    socket = await connect(owner)
    ids = await socket.send_message("Hello [sim:fault=401]")
    message_id = ids["message_id"]
    frames = await socket.until_type("message.error", message_id)
    assert not [f for f in frames if f["type"] == "message.retrying"]
    error = frames[-1]["error"]
    assert error["code"] == "auth_failed" and error["retryable"] is False
    assert "LLAMA_API_KEY" in error["message"]
    assert SIM_KEY not in str(frames)
    assert len(sim.requests) == 1
    question = await Message.objects.aget(pk=ids["user_message_id"])
    assert question.content == "Hello [sim:fault=401]"
