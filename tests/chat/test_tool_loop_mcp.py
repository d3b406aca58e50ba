"""The tool loop against a real MCP server added to the team (tests/support/mcp_server.py)."""

import pytest
from asgiref.sync import sync_to_async

from chatapp.chat.models import Message
from chatapp.tools.actions import fetch_listing, store_listing
from chatapp.tools.models import Tool, ToolServer
from tests.support.mcp_server import run_tool_server
from tests.support.polling import await_for

from .conftest import joined_text
from .test_tool_loop import awaiting, of_type

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["llama", "openai"])
def protocol(request, settings, sim):
    if request.param == "openai":
        settings.LLAMA_API_PROTOCOL = "openai"
        settings.LLAMA_API_BASE_URL = sim.openai_url
    return request.param


async def test_a_read_only_tool_runs_on_the_teams_server(
    connect, member, sim, team_tool_server, mcp_server, protocol
):
    socket = await connect(member)
    ids = await socket.send_message("Weather? [sim:call=get_weather args=city:Paris]")
    frames = await socket.until_type("message.done", ids["message_id"])

    assert of_type(frames, "message.tool_call")[0]["call"]["status"] == "running"
    (result,) = of_type(frames, "message.tool_result")
    assert result["content"] == "Sunny in Paris, 21 °C" and not result["is_error"]
    assert mcp_server.calls == [("get_weather", {"city": "Paris"})]
    offered = {tool["function"]["name"] for tool in sim.requests[-2]["tools"]}
    assert offered == {"get_weather", "create_ticket", "slow_lookup", "broken"}
    assert joined_text(frames, ids["message_id"]) == "The tool answered: Sunny in Paris, 21 °C"
    assert frames[-1]["status"] == "complete"


async def test_a_tool_that_changes_things_waits_for_approval(
    connect, member, sim, team_tool_server, mcp_server
):
    socket = await connect(member)
    ids = await socket.send_message("File it [sim:call=create_ticket args=title:Printer]")
    call = (await socket.until_type("message.tool_call", ids["message_id"]))[-1]["call"]
    assert call["status"] == "awaiting_approval"
    await await_for(awaiting(ids["message_id"]), "the call to be saved")
    assert mcp_server.calls == []
    await socket.send(
        {
            "type": "chat.tool_decision",
            "conversation_id": ids["conversation_id"],
            "message_id": ids["message_id"],
            "call_id": call["id"],
            "approve": True,
        }
    )
    frames = await socket.until_type("message.done", ids["message_id"])
    (result,) = of_type(frames, "message.tool_result")
    assert result["content"] == "Created ticket #1: Printer"
    assert mcp_server.record.tickets == ["Printer"]


async def test_denied_the_server_never_hears_of_it(
    connect, member, sim, team_tool_server, mcp_server
):
    socket = await connect(member)
    ids = await socket.send_message("File it [sim:call=create_ticket args=title:Printer]")
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
    assert of_type(frames, "message.tool_result")[0]["content"] == "The user declined this call."
    assert mcp_server.calls == [] and mcp_server.record.tickets == []


async def test_stop_cancels_a_running_call(connect, member, sim, team_tool_server, mcp_server):
    socket = await connect(member)
    ids = await socket.send_message("Slowly [sim:call=slow_lookup args=seconds:30]")
    await socket.until_type("message.tool_call", ids["message_id"])
    await await_for(lambda: mcp_server.calls, "the server to run the call")
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    frames = await socket.until_type("message.done", ids["message_id"])
    assert frames[-1]["status"] == "stopped"
    assert of_type(frames, "message.tool_result")[0]["is_error"]
    assert mcp_server.record.finished_lookups == 0
    message = await Message.objects.aget(pk=ids["message_id"])
    assert message.status == "stopped" and message.tool_calls[0]["status"] == "done"


async def test_failures_of_the_tool_and_of_its_server_go_back_to_the_model(
    connect, member, sim, team_tool_server, mcp_server
):
    socket = await connect(member)
    ids = await socket.send_message("Try [sim:call=broken]")
    frames = await socket.until_type("message.done", ids["message_id"])
    (failed,) = of_type(frames, "message.tool_result")
    assert failed["is_error"] and frames[-1]["status"] == "complete"

    mcp_server.stop()  # the server goes away after its tools were listed
    await socket.send(
        {
            "type": "chat.send",
            "request_id": "r2",
            "conversation_id": ids["conversation_id"],
            "content": "Weather? [sim:call=get_weather args=city:Oslo]",
        }
    )
    frames = await socket.until_type("message.done")
    (gone,) = of_type(frames, "message.tool_result")
    assert gone["is_error"] and gone["content"]
    assert frames[-1]["status"] == "complete"
    assert gone["content"] in joined_text(frames, frames[-1]["message_id"])


async def test_a_tool_marked_ask_first_during_the_answer_waits_for_approval(
    connect, member, sim, team_tool_server, mcp_server
):
    """The tools are listed when the answer starts; "ask first" set by an admin while it runs
    holds its later calls of that tool for the user's approval."""
    socket = await connect(member)
    ids = await socket.send_message("Twice [sim:call=slow_lookup rounds=2 args=seconds:1]")
    await await_for(lambda: mcp_server.calls, "the first call to run")
    await Tool.objects.filter(server=team_tool_server, name="slow_lookup").aupdate(ask_first=True)
    await socket.until_type("message.tool_result", ids["message_id"])
    call = (await socket.until_type("message.tool_call", ids["message_id"]))[-1]["call"]
    assert (call["round"], call["status"]) == (2, "awaiting_approval")
    await socket.send({"type": "chat.stop", "message_id": ids["message_id"]})
    await socket.until_type("message.done", ids["message_id"])
    assert len(mcp_server.calls) == 1


async def test_the_answer_of_a_server_that_never_ends_its_session_is_kept(
    connect, member, team, owner, settings, sim
):
    """The server answers at once, then never confirms the session's end: ending it waits
    until the call's timeout, and what the server answered is the call's result, not a
    timeout (tools.md)."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    with run_tool_server(hang_on_close=True) as running:
        server = await ToolServer.objects.acreate(
            team=team, name="sticky", url=running.url, created_by=owner, timeout=1
        )
        await sync_to_async(store_listing)(server, await fetch_listing(running.url, "", 5))
        socket = await connect(member)
        ids = await socket.send_message("Weather? [sim:call=get_weather args=city:Paris]")
        frames = await socket.until_type("message.done", ids["message_id"])
    assert running.calls == [("get_weather", {"city": "Paris"})]
    (result,) = of_type(frames, "message.tool_result")
    assert (result["content"], result["is_error"]) == ("Sunny in Paris, 21 °C", False)
