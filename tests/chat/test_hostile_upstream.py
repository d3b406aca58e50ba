"""Answers from a Llama API that sends what no Llama API should: each ends clearly and is kept."""

import json

import pytest
from channels.db import database_sync_to_async

from chatapp.chat.actions import replies
from chatapp.chat.generation import RUNNING
from chatapp.chat.models import Conversation, Message
from chatapp.chat.tooling import MAX_TURN_CALLS
from chatapp.llm import count_tokens_estimate
from chatapp.teams.models import TeamPolicy, TeamUsage
from tests.chat.conftest import joined_text
from tests.llm.conftest import MODEL
from tests.support.polling import await_for
from tests.support.upstream import Reply, hostile_upstream

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def upstream(settings):
    """The test's own OpenAI-compatible server as the site's provider: every chat request is
    answered with the first Reply the test appends."""
    replies: list[Reply] = []
    async with hostile_upstream(replies) as url:
        settings.LLAMA_API_BASE_URL = url
        settings.LLAMA_API_KEY = "hostile-test-key"
        settings.LLAMA_API_PROTOCOL = "openai"
        settings.LLAMA_DEFAULT_MODEL = MODEL
        yield replies


def sse(*chunks: dict) -> str:
    return "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"


def text_chunk(text: str, finish_reason: str | None = None) -> dict:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}
    return {"id": "chatcmpl-1", "choices": [choice]}


@pytest.mark.parametrize(
    "broken",
    [
        {"choices": {"0": {"index": 0, "delta": {"content": " world"}}}},  # not a list
        {"choices": [{"index": 0, "delta": {"content": 42}}]},  # text that is a number
        {"choices": [{"index": 0, "delta": {}, "finish_reason": {"why": "stop"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": "f"}]}}]},
    ],
)
async def test_a_chunk_of_another_shape_ends_the_answer_keeping_its_text(
    connect, member, upstream, broken
):
    upstream.append(Reply(sse(text_chunk("Hello"), broken, text_chunk("", "stop"))))
    socket = await connect(member)
    ids = await socket.send_message("Hi")
    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    assert error["code"] == "interrupted"
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert (answer.status, answer.content, answer.error_code) == (
        "interrupted",
        "Hello",
        "interrupted",
    )


async def test_token_counts_out_of_range_are_brought_into_it_and_the_answer_is_kept(
    connect, member, upstream
):
    usage = {"choices": [], "usage": {"prompt_tokens": -5, "completion_tokens": 10**30}}
    upstream.append(Reply(sse(text_chunk("Hello", "x" * 100), usage)))
    socket = await connect(member)
    ids = await socket.send_message("Hi")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["usage"] == {"prompt_tokens": 0, "completion_tokens": 2**31 - 1}
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert (answer.status, answer.content, answer.prompt_tokens) == ("complete", "Hello", 0)
    assert answer.finish_reason == "x" * 32


async def test_token_counts_whose_sum_over_tool_turns_is_out_of_range_keep_the_answer(
    connect, member, team, upstream, toolbox
):
    """Each turn's count is brought into range; their sum over the turns of an answer that
    called tools is too, so the answer and its usage are still saved."""
    call = {"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": "{}"}}
    calling = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
    ended = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    huge = {"choices": [], "usage": {"prompt_tokens": 10**30, "completion_tokens": 10**30}}
    upstream.append(Reply(sse(calling, ended, huge)))
    upstream.append(Reply(sse(text_chunk("Sunny.", "stop"), huge)))
    socket = await connect(member)
    ids = await socket.send_message("Weather?")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    assert done["usage"] == {"prompt_tokens": 2**31 - 1, "completion_tokens": 2**31 - 1}
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert (answer.status, answer.content, answer.completion_tokens) == (
        "complete",
        "Sunny.",
        2**31 - 1,
    )


async def test_nul_and_lone_surrogates_in_the_text_are_replaced_and_the_answer_is_kept(
    connect, member, upstream
):
    # Half a pair in one chunk and its other half in the next still make one character.
    chunks = [text_chunk("Hel\x00lo \ud83d"), text_chunk("\ude00 \ud83d!", "stop")]
    upstream.append(Reply(sse(*chunks)))
    socket = await connect(member)
    ids = await socket.send_message("Hi")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert answer.content == "Hel\ufffdlo \U0001f600 \ufffd!"


async def test_a_tool_call_holding_a_nul_or_half_a_pair_runs_and_the_answer_is_saved(
    connect, member, upstream, toolbox
):
    call = {"index": 0, "id": "call\x00one", "function": {"name": "get_weather"}}
    call["function"]["arguments"] = '{"city": "Pa\x00ris \ud800"}'  # raw, not escaped
    # Text before the calls goes back upstream with them: half a pair there too.
    delta = {"content": "Let me see \ud83d", "tool_calls": [call]}
    calling = {"choices": [{"index": 0, "delta": delta}]}
    ended = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    upstream.append(Reply(sse(calling, ended)))
    upstream.append(Reply(sse(text_chunk("Sunny.", "stop"))))
    socket = await connect(member)
    ids = await socket.send_message("Weather?")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert answer.content == "Let me see \ufffdSunny."
    (kept,) = answer.tool_calls
    assert kept["id"] == "call\ufffdone"
    assert json.loads(kept["arguments"]) == {"city": "Pa\ufffdris \ufffd"}
    assert toolbox.calls == [("get_weather", {"city": "Pa\ufffdris \ufffd"})]


async def test_only_the_first_calls_of_a_turn_that_asks_for_hundreds_run(
    connect, member, upstream, toolbox
):
    calls = [
        {"index": n, "id": f"call_{n}", "function": {"name": "get_weather", "arguments": "{}"}}
        for n in range(500)
    ]
    calling = {"choices": [{"index": 0, "delta": {"tool_calls": calls}}]}
    ended = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    upstream.append(Reply(sse(calling, ended)))
    upstream.append(Reply(sse(text_chunk("Sunny.", "stop"))))
    socket = await connect(member)
    ids = await socket.send_message("Weather everywhere?")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    assert len(toolbox.calls) == MAX_TURN_CALLS
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert [call["id"] for call in answer.tool_calls] == [
        f"call_{n}" for n in range(MAX_TURN_CALLS)
    ]


async def test_calls_without_end_are_refused_before_they_fill_the_memory(
    connect, member, upstream, toolbox
):
    """Each call under the 1 MiB one call may hold, but no end to how many: the reply is
    refused once its calls hold 8 MiB, and none of them runs."""
    piece = "a" * 1_000_000
    chunks = [
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": n,
                                "id": f"call_{n}",
                                "function": {"name": "get_weather", "arguments": piece},
                            }
                        ]
                    },
                }
            ]
        }
        for n in range(12)
    ]
    ended = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    upstream.append(Reply(sse(*chunks, ended)))
    socket = await connect(member)
    ids = await socket.send_message("Weather?")
    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    assert error["code"] == "upstream_unavailable"
    assert "tool calls longer than 8 MiB" in error["message"]
    assert toolbox.calls == []


async def test_an_error_detail_holding_a_nul_is_shown_and_saved(connect, member, upstream):
    detail = json.dumps({"error": {"message": "bad\x00 thing \ud800"}})
    upstream.append(Reply(detail, status=400))
    socket = await connect(member)
    ids = await socket.send_message("Hi")
    error = (await socket.until_type("message.error", ids["message_id"]))[-1]["error"]
    assert error["code"] == "bad_request"
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert answer.status == "error"
    assert answer.error_message.endswith("bad\ufffd thing \ufffd")


async def test_an_id_and_finish_reason_holding_a_nul_are_saved(connect, member, upstream):
    chunk = text_chunk("Hello", "st\x00op")
    chunk["id"] = "chatcmpl-\x00"
    upstream.append(Reply(sse(chunk)))
    socket = await connect(member)
    ids = await socket.send_message("Hi")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    answer = await Message.objects.aget(pk=ids["message_id"])
    assert (answer.content, answer.finish_reason) == ("Hello", "st\ufffdop")
    assert answer.upstream_request_id == "chatcmpl-\ufffd"


async def test_a_title_holding_a_nul_after_an_answer_holding_half_a_pair_is_kept(
    connect, member, upstream, settings
):
    settings.LLAMA_GENERATE_TITLES = True
    upstream.append(Reply(sse(text_chunk("Sunny \ud83d", "stop"))))
    title = {"index": 0, "message": {"role": "assistant", "content": "Wea\x00ther"}}
    upstream.append(Reply(json.dumps({"choices": [{**title, "finish_reason": "stop"}]})))
    socket = await connect(member)
    ids = await socket.send_message("Weather?")
    generation = RUNNING[ids["message_id"]]
    await socket.until_type("message.done", ids["message_id"])
    await generation.wait()
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    assert conversation.title == "Wea\ufffdther"


async def test_an_answer_with_an_emoji_split_between_chunks_is_screened(
    connect, member, team, upstream
):
    await TeamPolicy.objects.aupdate_or_create(
        team=team, defaults={"safety_output": "flag", "safety_on_error": "fail_closed"}
    )
    upstream.append(Reply(sse(text_chunk("Hi \ud83d"), text_chunk("\ude00 there", "stop"))))
    verdict = {"index": 0, "message": {"role": "assistant", "content": "safe"}}
    upstream.append(Reply(json.dumps({"choices": [{**verdict, "finish_reason": "stop"}]})))
    socket = await connect(member)
    ids = await socket.send_message("Hi")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    assert done["safety"]["unscreened"] == []


async def test_an_emoji_streamed_in_two_halves_is_relayed_as_one_character(
    connect, member, upstream
):
    chunks = [text_chunk("Hi \ud83d"), text_chunk("\ude00 there \ud83d"), text_chunk("", "stop")]
    upstream.append(Reply(sse(*chunks)))
    socket = await connect(member)
    ids = await socket.send_message("Hi")
    frames = await socket.until_type("message.done", ids["message_id"])
    # Whole characters in every frame: UTF-8, as a channel layer between processes carries text.
    for frame in frames:
        if frame["type"] == "message.delta":
            frame["text"].encode()
    assert joined_text(frames, ids["message_id"]) == "Hi \U0001f600 there \ufffd"


async def test_an_answer_whose_usage_never_arrives_still_counts(connect, member, team, upstream):
    """A server that sends no usage chunk (one that ignores stream_options, or a connection
    that drops after the finish reason, before the trailing usage): the answer's tokens count
    all the same, estimated as a stopped answer's are (the /v1 path estimates them too)."""
    words = "Paris is the capital of France, and has been for a long time. " * 4
    upstream.append(Reply(sse(text_chunk(words), text_chunk("", "stop"))))
    socket = await connect(member)
    ids = await socket.send_message("What is the capital of France?")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    usage = [
        (u.prompt_tokens, u.completion_tokens)
        async for u in TeamUsage.objects.filter(team=team, user=member)
    ]
    assert len(usage) == 1 and usage[0][0] > 0 and usage[0][1] >= len(words) // 4


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_arguments_holding_nan_or_an_infinite_number_are_refused_not_run(
    connect, member, upstream, toolbox, number
):
    """JSON has no NaN or infinite number (the tool server would get `null`, or refuse): the
    model is told its arguments are not a JSON object, as for any other invalid arguments,
    and the tool is not called."""
    arguments = '{"city": "Paris", "days": ' + number + "}"
    call = {"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": arguments}}
    calling = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
    ended = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    upstream.append(Reply(sse(calling, ended)))
    upstream.append(Reply(sse(text_chunk("Sorry.", "stop"))))
    socket = await connect(member)
    ids = await socket.send_message("Weather?")
    frames = await socket.until_type("message.done", ids["message_id"])
    (result,) = [frame for frame in frames if frame["type"] == "message.tool_result"]
    assert result["is_error"] and "not a JSON object" in result["content"]
    assert toolbox.calls == []
    (kept,) = (await Message.objects.aget(pk=ids["message_id"])).tool_calls
    assert kept["arguments"] == arguments  # as the model wrote them, not changed


async def test_a_turn_that_calls_tools_counts_when_its_usage_never_arrives(
    connect, member, team, upstream, toolbox
):
    """The provider bills the turn that asked for the calls, its prompt and the calls it
    wrote, though it sent no text: with no report they count by estimate, as text does."""
    arguments = '{"city": "' + "Paris, France, in the heart of Europe" * 8 + '"}'
    call = {"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": arguments}}
    calling = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
    ended = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    upstream.append(Reply(sse(calling, ended)))
    reported = {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 10}}
    upstream.append(Reply(sse(text_chunk("Sunny."), text_chunk("", "stop"), reported)))
    socket = await connect(member)
    ids = await socket.send_message("Weather?")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    usage = await TeamUsage.objects.aget(team=team, user=member)
    assert usage.prompt_tokens > 50  # the first turn's prompt: the question
    assert usage.completion_tokens >= 10 + len(arguments) // 4  # and the call it wrote


async def test_the_last_turn_after_tools_counts_when_its_usage_never_arrives(
    connect, member, team, upstream, toolbox
):
    """An answer that called tools: its last turn's tokens count even when the server reports
    none for it, as its earlier turns' do."""
    call = {"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": "{}"}}
    calling = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
    ended = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    reported = {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 10}}
    upstream.append(Reply(sse(calling, ended, reported)))
    words = "It is sunny in Paris today, with a light breeze from the west. " * 4
    upstream.append(Reply(sse(text_chunk(words), text_chunk("", "stop"))))
    socket = await connect(member)
    ids = await socket.send_message("Weather?")
    done = (await socket.until_type("message.done", ids["message_id"]))[-1]
    assert done["status"] == "complete"
    usage = await TeamUsage.objects.aget(team=team, user=member)
    assert usage.prompt_tokens > 50  # the last turn read the question and the tool's result
    assert usage.completion_tokens >= 10 + len(words) // 4


async def test_an_answer_reaped_after_a_tool_round_counts_the_earlier_turns_output_once(
    connect, member, team, upstream, toolbox
):
    """Its process seems dead while a call of its second turn waits for approval: the reaper
    counts its prompts (the first turn's as reported, the second's as its reservation holds
    it) and all its output by estimate. The first turn's output, which its reservation holds
    too (spent, and read again by the second turn), counts once."""
    weather = {"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": "{}"}}
    ended = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    reported = {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 400}}
    upstream.append(
        Reply(sse({"choices": [{"index": 0, "delta": {"tool_calls": [weather]}}]}, ended, reported))
    )
    ticket = {"index": 0, "id": "call_2", "function": {"name": "create_ticket", "arguments": "{}"}}
    second = {"choices": [{"index": 0, "delta": {"content": "Filing it.", "tool_calls": [ticket]}}]}
    upstream.append(Reply(sse(second, ended)))
    socket = await connect(member)
    ids = await socket.send_message("Weather?")
    answer = Message.objects.filter(pk=ids["message_id"])

    async def waiting() -> bool:
        row = await answer.aget()
        calls, checkpointed = row.tool_calls, row.content == "Filing it."
        return checkpointed and len(calls) == 2 and calls[1]["status"] == "awaiting_approval"

    await await_for(waiting, "the second turn's text and waiting call to be saved")
    row = await answer.aget()
    found = [replies.Abandoned(row.pk, ids["conversation_id"], row.model)]
    (reaped,) = await database_sync_to_async(replies.mark_interrupted)(found)
    conversation = await Conversation.objects.aget(pk=ids["conversation_id"])
    held_for_the_answer = conversation.max_tokens or 0
    held_for_the_second_prompt = row.reserved_tokens - (50 + 400) - held_for_the_answer
    assert reaped.usage.prompt_tokens == 50 + held_for_the_second_prompt
    output = "Filing it." + "get_weather{}" + "create_ticket{}"
    assert reaped.usage.completion_tokens == count_tokens_estimate(output)
    generation = RUNNING[ids["message_id"]]  # only stalled, in fact: it ends here
    generation.stop()
    await generation.wait()


async def test_a_title_whose_usage_never_arrives_still_counts(
    connect, member, team, upstream, settings
):
    """The title the model writes for a new conversation counts as a request of its own, its
    tokens estimated when the server reports none, as an answer's are."""
    settings.LLAMA_GENERATE_TITLES = True
    reported = {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 10}}
    upstream.append(Reply(sse(text_chunk("Paris."), text_chunk("", "stop"), reported)))
    choice = {"index": 0, "message": {"role": "assistant", "content": "Capital of France"}}
    title = {"id": "chatcmpl-2", "choices": [{**choice, "finish_reason": "stop"}]}
    upstream.append(Reply(json.dumps(title), headers={"Content-Type": "application/json"}))
    socket = await connect(member)
    await socket.send_message("What is the capital of France?")
    updated = (await socket.until_type("conversation.updated"))[-1]
    assert updated["conversation"]["title"] == "Capital of France"
    usage = await TeamUsage.objects.aget(team=team, user=member)
    assert usage.requests == 2
    assert usage.prompt_tokens > 50 and usage.completion_tokens > 10
