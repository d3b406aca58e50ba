"""The tool loop over the websocket: calls, results, rounds, approvals, stop, reload, context."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from prometheus_client import REGISTRY

from chatapp.chat import tooling
from chatapp.chat.models import Conversation, Message
from chatapp.llm import count_tokens_estimate
from chatapp.teams.actions import record_usage
from chatapp.teams.models import Membership, TeamPolicy, TeamUsage
from llama_simulator.models import count_prompt_tokens
from tests.support.polling import await_for

from .conftest import joined_text

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["llama", "openai"])
def protocol(request, settings, sim):
    if request.param == "openai":
        settings.LLAMA_API_PROTOCOL = "openai"
        settings.LLAMA_API_BASE_URL = sim.openai_url
    return request.param


def of_type(frames: list[dict], kind: str) -> list[dict]:
    return [frame for frame in frames if frame["type"] == kind]


async def test_a_tool_call_runs_and_the_model_answers_from_its_result(
    connect, member, sim, toolbox, protocol
):
    socket = await connect(member)
    ids = await socket.send_message("Weather? [sim:call=get_weather args=city:Paris]")
    frames = await socket.until_type("message.done", ids["message_id"])

    (call,) = of_type(frames, "message.tool_call")
    assert call["call"]["name"] == "get_weather"
    assert json.loads(call["call"]["arguments"]) == {"city": "Paris"}
    assert call["call"]["status"] == "running"
    (result,) = of_type(frames, "message.tool_result")
    assert result["call_id"] == call["call"]["id"]
    assert result["content"] == "Sunny in Paris" and result["is_error"] is False
    assert toolbox.calls == [("get_weather", {"city": "Paris"})]
    answer = joined_text(frames, ids["message_id"])
    assert answer == "The tool answered: Sunny in Paris"
    assert frames[-1]["status"] == "complete" and frames[-1]["finish_reason"] == "stop"

    # Upstream: the tools offered, then the calls and their result sent back.
    first, second = sim.requests[-2:]
    assert [tool["function"]["name"] for tool in first["tools"]][:2] == [
        "get_weather",
        "create_ticket",
    ]
    called, returned = second["messages"][-2:]
    assert called["role"] == "assistant" and called["tool_calls"][0]["id"] == result["call_id"]
    assert returned == {
        "role": "tool",
        "tool_call_id": result["call_id"],
        "content": "Sunny in Paris",
    }

    message = await Message.objects.aget(pk=ids["message_id"])
    assert message.content == answer
    (stored,) = message.tool_calls
    assert stored["status"] == "done" and stored["content"] == "Sunny in Paris"
    assert stored["elapsed"] is not None and stored["round"] == 1


async def test_every_rounds_tokens_count(connect, member, team, sim, toolbox):
    socket = await connect(member)
    ids = await socket.send_message("Weather? [sim:call=get_weather args=city:Oslo]")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    first, second = sim.requests[-2:]
    both = count_prompt_tokens(first["messages"]) + count_prompt_tokens(second["messages"])
    assert done["usage"]["prompt_tokens"] == both
    usage = await TeamUsage.objects.aget(team=team, user=member)
    assert usage.prompt_tokens == both
    assert usage.completion_tokens == done["usage"]["completion_tokens"]


async def test_a_tool_turns_tokens_count_when_the_next_turn_is_cut(
    connect, member, team, sim, toolbox
):
    socket = await connect(member)
    question = "Weather? [sim:call=get_weather args=city:Oslo] [sim:fault=error_after after=3]"
    ids = await socket.send_message(question)
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "interrupted"
    first, second = sim.requests[-2:]  # the cut turn's prompt counts by the estimate
    both = count_prompt_tokens(first["messages"]) + count_prompt_tokens(second["messages"])
    assert done["usage"]["prompt_tokens"] == both
    assert done["usage"]["completion_tokens"] > 3  # the calls' tokens and the text's
    usage = await TeamUsage.objects.aget(team=team, user=member)
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        done["usage"]["prompt_tokens"],
        done["usage"]["completion_tokens"],
    )


async def test_calls_shown_before_the_next_turn_fails_are_kept_when_it_is_regenerated(
    connect, member, sim, toolbox
):
    socket = await connect(member)
    # The call runs; the turn that reads its result fails before any text.
    question = "Ticket? [sim:call=get_weather args=city:Oslo] [sim:fault=error_after after=0]"
    ids = await socket.send_message(question)
    frames = await socket.until_type("message.done", ids["message_id"])
    assert of_type(frames, "message.tool_result")[0]["content"] == "Sunny in Oslo"
    assert frames[-1]["status"] == "interrupted"  # what the page shows stays, marked cut
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert answer.status == "interrupted" and answer.tool_calls[0]["content"] == "Sunny in Oslo"

    await socket.send(
        {"type": "chat.regenerate", "request_id": "r2", "message_id": ids["message_id"]}
    )
    again = (await socket.until_type("message.done"))[-1]["message_id"]
    assert again != ids["message_id"]
    kept = await Message.objects.aget(pk=ids["message_id"])  # the earlier version stays
    assert kept.tool_calls[0]["content"] == "Sunny in Oslo"


async def test_an_answer_saved_failed_with_its_calls_is_kept_when_it_is_regenerated(
    connect, member, sim, toolbox
):
    """Earlier versions saved such an answer as failed: its calls stay all the same."""
    socket = await connect(member)
    ids = await socket.send_message("Weather? [sim:call=get_weather args=city:Oslo]")
    await socket.until_type("message.done", ids["message_id"])
    await Message.objects.filter(pk=ids["message_id"]).aupdate(status="error", content="")
    await socket.send(
        {"type": "chat.regenerate", "request_id": "r2", "message_id": ids["message_id"]}
    )
    await socket.until_type("message.done")
    kept = await Message.objects.aget(pk=ids["message_id"])
    assert kept.tool_calls[0]["content"] == "Sunny in Oslo"


async def test_one_turns_calls_run_together(connect, member, sim, toolbox):
    socket = await connect(member)
    ids = await socket.send_message("Both [sim:call=slow_lookup+get_weather args=city:Rome]")
    await toolbox.slow_started.wait()
    # The quick call finished while the slow one still runs: they run at the same time.
    frames = await socket.until_type("message.tool_result", ids["message_id"])
    assert frames[-1]["content"] == "Sunny in Rome"
    assert toolbox.running == 1
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    frames = await socket.until_type("message.done", ids["message_id"])
    assert frames[-1]["status"] == "stopped"
    (stopped,) = of_type(frames, "message.tool_result")
    assert stopped["is_error"] and stopped["content"] == tooling.STOPPED
    assert toolbox.cancelled == 1 and toolbox.running == 0
    message = await Message.objects.aget(pk=ids["message_id"])
    assert [call["status"] for call in message.tool_calls] == ["done", "done"]
    await await_for(lambda: sim.active_streams == 0, "the upstream stream to close")


async def test_the_rounds_are_capped_and_the_last_turn_gets_no_tools(
    connect, member, sim, toolbox, monkeypatch
):
    monkeypatch.setattr(tooling, "MAX_TOOL_ROUNDS", 3)
    socket = await connect(member)
    ids = await socket.send_message("Forever [sim:call=get_weather rounds=50 args=city:Bern]")
    frames = await socket.until_type("message.done", ids["message_id"])
    assert len(of_type(frames, "message.tool_result")) == 3
    assert [call["call"]["round"] for call in of_type(frames, "message.tool_call")] == [1, 2, 3]
    assert "tools" not in sim.requests[-1] and "tools" in sim.requests[-2]
    assert frames[-1]["status"] == "complete"
    assert joined_text(frames, ids["message_id"]).startswith("The tool answered")


async def test_calls_of_each_round_are_kept_when_the_model_reuses_their_ids(
    connect, member, sim, toolbox
):
    socket = await connect(member)
    ids = await socket.send_message("Twice [sim:call=get_weather rounds=2 same_ids args=city:Oslo]")
    frames = await socket.until_type("message.done", ids["message_id"])
    assert frames[-1]["status"] == "complete"
    results = of_type(frames, "message.tool_result")
    assert len(results) == 2 and len({result["call_id"] for result in results}) == 2
    message = await Message.objects.aget(pk=ids["message_id"])
    assert [call["round"] for call in message.tool_calls] == [1, 2]
    assert [call["id"] for call in message.tool_calls] == [r["call_id"] for r in results]
    # Upstream, each result answers the call it belongs to.
    sent = sim.requests[-1]["messages"]
    asked = [c["id"] for m in sent if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    answered = [m["tool_call_id"] for m in sent if m["role"] == "tool"]
    assert asked == answered == [r["call_id"] for r in results]


async def test_calls_past_the_last_round_never_run_and_the_answer_says_why_it_ended(
    connect, member, team, sim, toolbox, monkeypatch, protocol
):
    monkeypatch.setattr(tooling, "MAX_TOOL_ROUNDS", 1)
    socket = await connect(member)
    ids = await socket.send_message("Again [sim:call=get_weather rounds=9 anyway args=city:Nice]")
    frames = await socket.until_type("message.done", ids["message_id"])
    assert "tools" not in sim.requests[-1]  # the model called anyway: nothing ran
    assert len(of_type(frames, "message.tool_call")) == 1
    assert toolbox.calls == [("get_weather", {"city": "Nice"})]
    (error,) = of_type(frames, "message.error")
    expected = (
        "The model kept asking for tools after the 1 turn of tool calls an answer may take,"
        " so its answer stopped there: regenerate, or ask for less at once."
    )
    assert error["error"] == {
        "code": "tool_rounds_exhausted",
        "message": expected,
        "retryable": True,
    }
    done = frames[-1]
    assert done["status"] == "interrupted"  # the call the page showed stays
    message = await Message.objects.aget(pk=ids["message_id"])
    assert message.status == "interrupted"
    assert (message.error_code, message.error_message) == ("tool_rounds_exhausted", expected)
    # Both turns' tokens as the upstream reported them, not an estimate.
    first, second = sim.requests[-2:]
    both = count_prompt_tokens(first["messages"]) + count_prompt_tokens(second["messages"])
    assert done["usage"]["prompt_tokens"] == both


async def test_calls_when_no_tools_are_offered_end_the_answer_saying_so(
    connect, member, sim, toolbox
):
    socket = await connect(member)
    ids = await socket.send_message(
        "Again [sim:call=get_weather anyway args=city:Nice]", settings={"tools": False}
    )
    error = (await socket.until_type("message.error", ids["message_id"]))[-1]
    assert "tools" not in sim.requests[-1] and toolbox.calls == []
    assert error["error"]["code"] == "tool_rounds_exhausted"
    assert error["error"]["message"] == (
        "The model asked for tools, but this conversation offers none, so its answer stopped"
        " there: regenerate to try again."
    )
    message = await Message.objects.aget(pk=ids["message_id"])
    assert (message.status, message.error_code) == ("error", "tool_rounds_exhausted")


async def test_errors_and_unknown_tools_go_back_to_the_model(connect, member, sim, toolbox):
    errors_before = tool_calls_counted("error")
    socket = await connect(member)
    ids = await socket.send_message("Oops [sim:call=broken+no_such_tool]")
    frames = await socket.until_type("message.done", ids["message_id"])
    results = {f["call"]["name"]: f for f in of_type(frames, "message.tool_result")}
    assert results["broken"]["is_error"] and "boom" in results["broken"]["content"]
    assert results["no_such_tool"]["is_error"]
    assert "no tool named 'no_such_tool'" in results["no_such_tool"]["content"]
    sent = [m for m in sim.requests[-1]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in sent] == [
        results["broken"]["content"],
        results["no_such_tool"]["content"],
    ]
    assert frames[-1]["status"] == "complete"
    assert tool_calls_counted("error") == errors_before + 2


def test_arguments_nested_past_the_json_parser_are_not_an_object():
    assert tooling.parse_arguments("[" * 100_000 + "]" * 100_000) is None


async def test_a_slow_tool_times_out_as_a_tool_error(connect, member, sim, toolbox, monkeypatch):
    monkeypatch.setattr(tooling, "TOOL_LOOP_SECONDS", 0.5)  # the whole budget, not a pace
    socket = await connect(member)
    ids = await socket.send_message("Slow [sim:call=slow_lookup]")
    frames = await socket.until_type("message.done", ids["message_id"])
    (result,) = of_type(frames, "message.tool_result")
    assert result["is_error"]
    assert result["content"] == "The tool did not answer within 0.5 seconds."
    assert toolbox.cancelled == 1
    assert "tools" not in sim.requests[-1]  # the budget is spent: the model must answer
    assert frames[-1]["status"] == "complete"


async def test_a_huge_result_is_cut_and_kept_as_text(connect, member, sim, toolbox):
    socket = await connect(member)
    ids = await socket.send_message("Big [sim:call=huge]")
    frames = await socket.until_type("message.done", ids["message_id"])
    (result,) = of_type(frames, "message.tool_result")
    assert len(result["content"]) < tooling.RESULT_MAX_CHARS + 100
    assert result["content"].startswith("<b>x</b>")  # as text: the page never renders it
    system = [m for m in sim.requests[-1]["messages"] if m["role"] == "system"]
    assert all("<b>x</b>" not in m["content"] for m in system)


async def test_a_result_holding_nul_or_lone_surrogates_is_kept_as_storable_text(
    connect, member, sim, toolbox
):
    socket = await connect(member)
    ids = await socket.send_message("Read it [sim:call=raw_bytes]")
    frames = await socket.until_type("message.done", ids["message_id"])
    assert frames[-1]["status"] == "complete"
    (result,) = of_type(frames, "message.tool_result")
    assert result["content"] == "PK\x03\x04\ufffd\ufffd \ufffd end"
    message = await Message.objects.aget(pk=ids["message_id"])
    assert message.status == "complete"
    assert message.tool_calls[0]["content"] == result["content"]
    assert sim.requests[-1]["messages"][-1]["content"] == result["content"]


async def test_approval_granted_runs_the_call(connect, member, sim, toolbox):
    socket = await connect(member)
    ids = await socket.send_message("File it [sim:call=create_ticket args=title:Printer]")
    frames = await socket.until_type("message.tool_call", ids["message_id"])
    call = frames[-1]["call"]
    assert call["status"] == "awaiting_approval" and toolbox.calls == []
    await await_for(awaiting(ids["message_id"]), "the call to be saved")

    decision = {
        "type": "chat.tool_decision",
        "message_id": ids["message_id"],
        "call_id": call["id"],
        "approve": True,
    }
    await socket.send(decision)
    frames = await socket.until_type("message.done", ids["message_id"])
    assert of_type(frames, "message.tool_call")[0]["call"]["status"] == "running"
    (result,) = of_type(frames, "message.tool_result")
    assert result["content"] == "Ticket T-1 created" and not result["is_error"]
    assert toolbox.calls == [("create_ticket", {"title": "Printer"})]
    # Decided already: the call waits no more, so a second decision is refused.
    refused = await socket.expect_error(decision)
    assert refused["error"]["code"] == "not_found"


async def test_a_call_given_a_long_id_can_be_approved(connect, member, sim, toolbox):
    socket = await connect(member)
    ids = await socket.send_message("File it [sim:call=create_ticket long_ids args=title:Fax]")
    frames = await socket.until_type("message.tool_call", ids["message_id"])
    call = frames[-1]["call"]
    await await_for(awaiting(ids["message_id"]), "the call to be saved")

    await socket.send(
        {
            "type": "chat.tool_decision",
            "message_id": ids["message_id"],
            "call_id": call["id"],
            "approve": True,
        }
    )
    frames = await socket.until_type("message.done", ids["message_id"])
    (result,) = of_type(frames, "message.tool_result")
    assert result["content"] == "Ticket T-1 created"
    assert toolbox.calls == [("create_ticket", {"title": "Fax"})]
    tool_message = sim.requests[-1]["messages"][-1]
    assert (tool_message["role"], tool_message["tool_call_id"]) == ("tool", call["id"])


async def test_the_time_spent_approving_is_not_taken_from_the_tools_time(
    connect, member, sim, toolbox, monkeypatch
):
    """Approved after the answer's whole time for tools has passed: the call still runs."""
    monkeypatch.setattr(tooling, "TOOL_LOOP_SECONDS", 0.5)
    socket = await connect(member)
    ids, decision = await an_approval_awaited(socket)
    await asyncio.sleep(1)  # a person reading the call before approving it
    await socket.send(decision)
    frames = await socket.until_type("message.done", ids["message_id"])
    (result,) = of_type(frames, "message.tool_result")
    assert not result["is_error"] and result["content"] == "Ticket T-1 created"
    assert toolbox.calls == [("create_ticket", {})]


async def test_approval_denied_tells_the_model(connect, member, sim, toolbox):
    socket = await connect(member)
    ids = await socket.send_message("File it [sim:call=create_ticket]")
    call = (await socket.until_type("message.tool_call", ids["message_id"]))[-1]["call"]
    await await_for(awaiting(ids["message_id"]), "the call to be saved")
    await socket.send(
        {
            "type": "chat.tool_decision",
            "message_id": ids["message_id"],
            "call_id": call["id"],
            "approve": False,
        }
    )
    frames = await socket.until_type("message.done", ids["message_id"])
    (result,) = of_type(frames, "message.tool_result")
    assert result["is_error"] and result["content"] == tooling.DECLINED
    assert toolbox.calls == []
    assert tooling.DECLINED in joined_text(frames, ids["message_id"])


async def test_an_unanswered_approval_counts_as_denied(connect, member, sim, toolbox, monkeypatch):
    monkeypatch.setattr(tooling, "APPROVAL_SECONDS", 0.2)
    socket = await connect(member)
    ids = await socket.send_message("File it [sim:call=create_ticket]")
    frames = await socket.until_type("message.done", ids["message_id"])
    (result,) = of_type(frames, "message.tool_result")
    assert result["content"] == tooling.DECLINED and toolbox.calls == []


async def test_decisions_on_calls_not_yours_or_not_waiting_are_refused(
    connect, member, outsider, sim, toolbox
):
    socket = await connect(member)
    ids = await socket.send_message("File it [sim:call=create_ticket]")
    call = (await socket.until_type("message.tool_call", ids["message_id"]))[-1]["call"]
    await await_for(awaiting(ids["message_id"]), "the call to be saved")
    decision = {
        "type": "chat.tool_decision",
        "message_id": ids["message_id"],
        "call_id": call["id"],
        "approve": True,
    }
    stranger = await connect(outsider)
    assert (await stranger.expect_error(decision))["error"]["code"] == "not_found"
    wrong_call = {**decision, "call_id": "call_nope"}
    assert (await socket.expect_error(wrong_call))["error"]["code"] == "not_found"
    for bad in ({"approve": "yes"}, {"call_id": 7}, {"call_id": ""}, {"message_id": "x"}):
        error = await socket.expect_error({**decision, **bad})
        assert error["error"]["code"] == "invalid_frame"
    assert toolbox.calls == []
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    frames = await socket.until_type("message.done", ids["message_id"])
    assert frames[-1]["status"] == "stopped"  # stop ends the wait too
    (result,) = of_type(frames, "message.tool_result")
    assert result["is_error"] and toolbox.calls == []


@pytest.mark.parametrize("protocol", ["llama", "openai"])
async def test_a_stop_while_a_call_waits_counts_the_turn_that_called_once(
    connect, member, team, sim, toolbox, settings, protocol
):
    """The model says a few words, then calls: that turn's usage is the provider's report,
    and stopping while the call waits for approval adds no estimate of the same turn."""
    if protocol == "openai":
        settings.LLAMA_API_PROTOCOL, settings.LLAMA_API_BASE_URL = "openai", sim.openai_url
    socket = await connect(member)
    ids = await socket.send_message("File it [sim:call=create_ticket preface]")
    await socket.until_type("message.tool_call", ids["message_id"])
    await await_for(awaiting(ids["message_id"]), "the call to be saved")
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    frames = await socket.until_type("message.done", ids["message_id"])
    assert frames[-1]["status"] == "stopped"
    assert joined_text(socket.received, ids["message_id"]).startswith("Let me check that.")
    (request,) = sim.requests
    assert frames[-1]["usage"]["prompt_tokens"] == count_prompt_tokens(request["messages"])
    row = await TeamUsage.objects.aget(team=team, user=member)
    assert row.prompt_tokens == frames[-1]["usage"]["prompt_tokens"]


async def test_leaving_the_team_ends_a_call_waiting_for_approval(
    connect, member, team, sim, toolbox
):
    """Removed from the team, one's answers there stop (chatapp.chat.signals): a call waiting
    for approval ends unrun, and an approval arriving later finds nothing to approve."""
    socket = await connect(member)
    ids, decision = await an_approval_awaited(socket)
    await database_sync_to_async(Membership.objects.filter(team=team, user=member).delete)()
    frames = await socket.until_type("message.done", ids["message_id"])
    assert frames[-1]["status"] == "stopped"
    refused = await socket.expect_error(decision)
    assert refused["error"]["code"] == "not_found"
    assert toolbox.calls == []


async def test_an_approval_before_the_removal_stops_the_answer_is_refused(
    connect, member, team, sim, toolbox
):
    """The membership is gone but the answer has not stopped yet (the stop follows the
    deletion's commit): approving is refused, declining still ends the wait."""
    socket = await connect(member)
    ids, decision = await an_approval_awaited(socket)
    await database_sync_to_async(remove_without_signals)(team, member)  # removed, socket open
    refused = await socket.expect_error(decision)
    assert refused["error"]["code"] == "forbidden"
    await socket.send({**decision, "approve": False})  # declining still ends the wait
    frames = await socket.until_type("message.done", ids["message_id"])
    (result,) = of_type(frames, "message.tool_result")
    assert result["content"] == tooling.DECLINED and toolbox.calls == []


async def an_approval_awaited(socket) -> tuple[dict, dict]:
    """A call of a new answer waiting for approval: the answer's ids and the approving frame."""
    ids = await socket.send_message("File it [sim:call=create_ticket]")
    call = (await socket.until_type("message.tool_call", ids["message_id"]))[-1]["call"]
    await await_for(awaiting(ids["message_id"]), "the call to be saved")
    decision = {"type": "chat.tool_decision", "message_id": ids["message_id"], "approve": True}
    return ids, {**decision, "call_id": call["id"]}


def remove_without_signals(team, member) -> None:
    """The membership row gone, as the database sees it before anything reacts to it."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {Membership._meta.db_table} WHERE team_id = %s AND user_id = %s",
            [team.pk, member.pk],
        )


async def test_reload_mid_loop_shows_the_calls_so_far(connect, member, sim, toolbox):
    first = await connect(member)
    ids = await first.send_message("Both [sim:call=get_weather+slow_lookup args=city:Riga]")
    await first.until_type("message.tool_result", ids["message_id"])

    second = await connect(member)
    await second.send({"type": "chat.subscribe", "conversation_id": ids["conversation_id"]})
    state = await second.receive()
    answer = next(m for m in state["messages"] if m["id"] == ids["message_id"])
    assert answer["status"] == "streaming"
    calls = {call["name"]: call for call in answer["tool_calls"]}
    assert calls["get_weather"]["status"] == "done"
    assert calls["get_weather"]["content"] == "Sunny in Riga"
    assert calls["slow_lookup"]["status"] == "running"

    await first.send({"type": "chat.stop", "message_id": ids["message_id"]})
    rest = await second.until_type("message.done", ids["message_id"])
    assert of_type(rest, "message.tool_result")[0]["call"]["name"] == "slow_lookup"


async def test_later_turns_send_the_calls_and_results_upstream(connect, member, sim, toolbox):
    socket = await connect(member)
    ids = await socket.send_message("Weather? [sim:call=get_weather args=city:Lima]")
    frames = await socket.until_type("message.done", ids["message_id"])
    call_id = of_type(frames, "message.tool_result")[0]["call_id"]
    await socket.send(
        {
            "type": "chat.send",
            "request_id": "r2",
            "conversation_id": ids["conversation_id"],
            "content": "Thanks",
        }
    )
    await socket.until_type("message.done")

    sent = sim.requests[-1]["messages"]
    roles = [m["role"] for m in sent]
    assert roles[-5:] == ["user", "assistant", "tool", "assistant", "user"]
    called, result, answer = sent[-4:-1]
    assert called["tool_calls"][0]["id"] == call_id
    assert called["tool_calls"][0]["function"]["name"] == "get_weather"
    assert result == {"role": "tool", "tool_call_id": call_id, "content": "Sunny in Lima"}
    assert answer["content"] == "The tool answered: Sunny in Lima"


async def test_regenerate_runs_the_loop_again(connect, member, sim, toolbox):
    socket = await connect(member)
    ids = await socket.send_message("Weather? [sim:call=get_weather args=city:Kyiv]")
    await socket.until_type("message.done", ids["message_id"])
    await socket.send(
        {"type": "chat.regenerate", "request_id": "r2", "message_id": ids["message_id"]}
    )
    frames = await socket.until_type("message.done")
    again = frames[-1]["message_id"]
    assert again != ids["message_id"]
    assert of_type(frames, "message.tool_result")[0]["content"] == "Sunny in Kyiv"
    assert len(toolbox.calls) == 2
    regenerated = await Message.objects.aget(pk=again)
    assert regenerated.tool_calls[0]["name"] == "get_weather"


async def test_a_conversation_with_tools_off_offers_none(connect, member, sim, toolbox):
    socket = await connect(member)
    ids = await socket.send_message("Hello")
    await socket.until_type("message.done", ids["message_id"])
    assert "tools" in sim.requests[-1]
    await Conversation.objects.filter(pk=ids["conversation_id"]).aupdate(tools_enabled=False)
    await socket.send(
        {
            "type": "chat.send",
            "request_id": "r2",
            "conversation_id": ids["conversation_id"],
            "content": "Weather? [sim:call=get_weather]",
        }
    )
    frames = await socket.until_type("message.done")
    assert "tools" not in sim.requests[-1]
    assert not of_type(frames, "message.tool_call") and toolbox.calls == []


async def test_a_team_without_tools_offers_none(connect, member, sim):
    socket = await connect(member)
    ids = await socket.send_message("Weather? [sim:call=get_weather]")
    frames = await socket.until_type("message.done", ids["message_id"])
    assert "tools" not in sim.requests[-1]
    assert not of_type(frames, "message.tool_call")


def tool_calls_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("chat_tool_calls_total", {"outcome": outcome}) or 0.0


def awaiting(message_id: int):
    async def check() -> bool:
        calls = (await Message.objects.aget(pk=message_id)).tool_calls
        return bool(calls) and calls[0]["status"] == "awaiting_approval"

    return check


async def test_tools_off_from_the_settings_of_a_send_is_kept(connect, member, sim, toolbox):
    socket = await connect(member)
    ids = await socket.send_message("Hi [sim:call=get_weather]", settings={"tools": False})
    frames = await socket.until_type("message.done", ids["message_id"])
    assert not of_type(frames, "message.tool_call") and "tools" not in sim.requests[-1]
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.tools_enabled is False
    await socket.send(
        {
            "type": "chat.send",
            "request_id": "r2",
            "conversation_id": ids["conversation_id"],
            "content": "Again",
        }
    )
    await socket.until_type("message.done")
    assert "tools" not in sim.requests[-1]  # kept for later sends
    error = await socket.expect_error(
        {"type": "chat.send", "conversation_id": None, "content": "x", "settings": {"tools": 1}}
    )
    assert error["error"]["field"] == "tools"


async def test_an_answers_reservation_holds_the_tools_it_offers_with_its_prompt(
    connect, member, team, sim, toolbox
):
    """The team's tools go upstream described with every turn, and the provider bills them as
    prompt: what an answer holds against the budget counts them, as an API request's holds
    its functions, or answers starting together could pass the budget by them each."""
    await TeamPolicy.objects.acreate(team=team, monthly_token_budget=1_000_000)
    socket = await connect(member)
    described = count_tokens_estimate(json.dumps([tool.spec() for tool in toolbox.tools]))
    held = []
    for tools in (toolbox.tools, ()):
        toolbox.tools = tools
        ids = await socket.send_message("Hello")
        await socket.until_type("message.done", ids["message_id"])
        held.append((await Message.objects.aget(pk=ids["message_id"])).reserved_tokens)
    assert "tools" in sim.requests[0] and "tools" not in sim.requests[1]
    assert held[0] - held[1] == described


async def spent_before(team, member, **budget) -> None:
    """The team's budget (or the member's limit) with one token left this month."""
    await TeamPolicy.objects.acreate(team=team, **budget)
    (limit,) = budget.values()
    await database_sync_to_async(record_usage)(team, member, "m", limit - 1, 0)


@pytest.mark.parametrize("budget", ["monthly_token_budget", "member_monthly_token_budget"])
async def test_an_answer_whose_tools_ran_past_the_budget_stops_before_its_next_turn(
    connect, member, team, sim, toolbox, budget
):
    """Admitted with one token left, its first turn spends more: the model's next turn,
    which would read the results, is not asked for, and what the first cost is counted."""
    await spent_before(team, member, **{budget: 10_000})
    socket = await connect(member)
    ids = await socket.send_message("Weather? [sim:call=get_weather args=city:Oslo]")
    frames = await socket.until_type("message.error", ids["message_id"])
    assert frames[-1]["error"]["code"] == "quota_exceeded"
    refusal = frames[-1]["error"]["message"]
    assert refusal.endswith("The answer stopped before the model read its tools' results.")
    assert "held by answers still streaming" not in refusal  # nothing else streams
    assert of_type(frames, "message.tool_result")[0]["content"] == "Sunny in Oslo"
    assert len(sim.requests) == 1  # the turn that called the tool, and no other
    message = await Message.objects.aget(pk=ids["message_id"])
    assert message.status == "interrupted"  # its call was shown, and stays
    first_turn = count_prompt_tokens(sim.requests[0]["messages"])
    usage = await TeamUsage.objects.exclude(prompt_tokens=9_999).aget(team=team)
    assert usage.prompt_tokens == first_turn and usage.completion_tokens > 0
    spent = 9_999 + usage.prompt_tokens + usage.completion_tokens
    assert f"({spent:,} used)" in refusal  # with what this answer spent


async def test_an_answer_whose_tools_ran_within_the_budget_goes_on_holding_what_it_spent(
    connect, member, team, sim, toolbox
):
    """Its reservation grows by what the turn that called the tools spent, and the results
    the next turn reads: other answers of the team are admitted against that."""
    await TeamPolicy.objects.acreate(team=team, monthly_token_budget=1_000_000)
    socket = await connect(member)
    question = "File it [sim:call=create_ticket args=title:Printer] [sim:pace tps=20]"
    ids = await socket.send_message(f"{question} [sim:long tokens=40]")
    call = (await socket.until_type("message.tool_call", ids["message_id"]))[-1]["call"]
    assert call["status"] == "awaiting_approval"  # the answer waits: its first reservation
    await await_for(awaiting(ids["message_id"]), "the call to be saved")
    answer = Message.objects.filter(pk=ids["message_id"])
    first = (await answer.aget()).reserved_tokens
    decision = {"message_id": ids["message_id"], "call_id": call["id"], "approve": True}
    await socket.send({"type": "chat.tool_decision", **decision})
    await socket.until_type("message.delta", ids["message_id"])  # the next turn streams
    assert len(sim.requests) == 2
    spent_and_results = (await answer.aget()).reserved_tokens - first
    assert spent_and_results >= count_prompt_tokens(sim.requests[0]["messages"])
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"


async def test_text_before_calls_no_turn_may_make_is_kept_and_the_answer_says_why_it_ended(
    connect, member, sim, toolbox
):
    socket = await connect(member)
    question = "Again [sim:call=get_weather anyway preface args=city:Nice]"
    ids = await socket.send_message(question, settings={"tools": False})
    frames = await socket.until_type("message.done", ids["message_id"])
    (error,) = of_type(frames, "message.error")
    assert error["error"]["code"] == "tool_rounds_exhausted"
    assert frames[-1]["status"] == "interrupted" and toolbox.calls == []
    message = await Message.objects.aget(pk=ids["message_id"])
    assert message.content == joined_text(frames, ids["message_id"]) != ""
    assert (message.status, message.error_code) == ("interrupted", "tool_rounds_exhausted")
