"""The tool loop's interface: the team's available tools, and calls against a real MCP server."""

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from mcp.types import CallToolResult, ImageContent, TextContent

from chatapp.chat import tooling
from chatapp.teams import crypto
from chatapp.tools import mcp_client, registry
from chatapp.tools.actions import fetch_listing, store_listing
from chatapp.tools.models import (
    MAX_OFFERED_TOOLS,
    MAX_SCHEMA_CHARS,
    ServerStatus,
    Tool,
    ToolServer,
)
from chatapp.tools.registry import NAME_PATTERN, AvailableTool, available_tools, call_tool
from tests.support.mcp_server import run_tool_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def close_orm_thread_connections():
    """The ORM thread of async tests keeps its connection; close it so the test database can go."""
    yield
    await sync_to_async(connections.close_all)()


def by_name(tools: list[AvailableTool]) -> dict[str, AvailableTool]:
    return {tool.name: tool for tool in tools}


async def tools_for_team(team_id: int) -> list[AvailableTool]:
    return await sync_to_async(available_tools)(team_id)


async def test_tools_for_team_lists_the_enabled_tools_with_approval_from_annotations(
    team, team_tool_server
):
    tools = by_name(await tools_for_team(team.pk))
    assert set(tools) == {"get_weather", "create_ticket", "slow_lookup", "broken"}
    assert tools["get_weather"].needs_approval is False
    assert tools["create_ticket"].needs_approval is True
    assert tools["get_weather"].timeout == 30.0
    spec = tools["get_weather"].spec()
    assert spec["type"] == "function"
    assert spec["function"]["name"] == "get_weather"
    assert spec["function"]["description"] == "Today's weather in a city."
    assert spec["function"]["parameters"]["properties"]["city"]["type"] == "string"
    assert spec["function"]["parameters"]["required"] == ["city"]


async def test_ask_first_and_disabled_tools(team, team_tool_server):
    await Tool.objects.filter(name="get_weather").aupdate(ask_first=True)
    await Tool.objects.filter(name="broken").aupdate(enabled=False)
    tools = by_name(await tools_for_team(team.pk))
    assert "broken" not in tools
    assert tools["get_weather"].needs_approval is True


async def test_a_down_server_offers_no_tools(team, team_tool_server):
    await ToolServer.objects.filter(pk=team_tool_server.pk).aupdate(status=ServerStatus.DOWN)
    assert await tools_for_team(team.pk) == []


async def test_other_teams_tools_are_not_listed(team, team_tool_server, make_user):
    other = await sync_to_async(type(team).objects.create)(name="Other")
    assert await tools_for_team(other.pk) == []


def test_names_clash_only_then_get_the_server_prefix(team, team_tool_server, mcp_server):
    second = ToolServer.objects.create(team=team, name="weather.io", url=mcp_server.url)
    Tool.objects.create(server=second, name="get_weather", read_only=True)
    Tool.objects.create(server=second, name="odd name/with.dots", read_only=True)
    tools = by_name(registry.available_tools(team.pk))
    assert "helpdesk__get_weather" in tools
    assert "weather_io__get_weather" in tools
    assert "create_ticket" in tools  # no clash, no prefix
    assert "odd_name_with_dots" in tools
    assert all(NAME_PATTERN.match(name) for name in tools)
    assert len({tool.tool_id for tool in tools.values()}) == len(tools)


def test_at_most_the_first_128_tools_are_offered(team, team_tool_server, mcp_server):
    second = ToolServer.objects.create(team=team, name="zz more", url=mcp_server.url)
    Tool.objects.bulk_create(
        Tool(server=second, name=f"extra_{number:03}", read_only=True) for number in range(200)
    )
    tools = registry.available_tools(team.pk)
    assert len(tools) == MAX_OFFERED_TOOLS == 128
    assert "get_weather" in by_name(tools)  # servers in name order: the first keeps its tools
    assert tools[-1].name == f"extra_{128 - len(team_tool_server.tools.all()) - 1:03}"


def test_tools_stored_past_todays_size_limits_are_not_offered(team, team_tool_server):
    """Listed before the limits existed, kept until the server is refreshed: every request
    would still carry them, so they are left out of it, and the rest offered up to the cap."""
    fields = {f"f{number}": {"type": "string"} for number in range(MAX_SCHEMA_CHARS // 20)}
    Tool.objects.bulk_create(
        [
            Tool(server=team_tool_server, name="a_wordy", description="w" * 4_001),
            Tool(server=team_tool_server, name="a_sprawling", input_schema={"properties": fields}),
            Tool(server=team_tool_server, name="a_fits", description="w" * 4_000),
            *(Tool(server=team_tool_server, name=f"extra_{n:03}") for n in range(200)),
        ]
    )
    tools = by_name(registry.available_tools(team.pk))
    assert len(tools) == MAX_OFFERED_TOOLS
    assert "a_fits" in tools and not {"a_wordy", "a_sprawling"} & set(tools)


def test_tools_stored_with_an_invalid_schema_before_it_was_checked_are_dropped_once(team, owner):
    """A refresh leaves out a tool whose input schema is no valid JSON Schema (a model API
    refuses the whole request with it); one stored before that check is checked once, as
    the site is upgraded (not on every answer: a JSON Schema check costs more), and dropped,
    as a refresh would drop it, the server's status naming it."""
    executor = MigrationExecutor(connection)
    executor.migrate([("tools", "0001_initial")])
    try:
        server = ToolServer.objects.create(team=team, name="old", url="https://9.9.9.9/mcp")
        Tool.objects.create(server=server, name="fine", input_schema={"type": "object"})
        wrong = {"type": "object", "properties": {"city": {"type": "town"}}}
        Tool.objects.create(server=server, name="odd", input_schema=wrong)
    finally:
        latest = MigrationExecutor(connection)
        latest.migrate(latest.loader.graph.leaf_nodes())
    assert [tool.name for tool in registry.available_tools(team.pk)] == ["fine"]
    server.refresh_from_db()
    assert list(server.tools.values_list("name", flat=True)) == ["fine"]
    assert server.last_error == (
        "Left out 1 tool whose input schema is not a valid JSON Schema: odd."
    )


async def test_call_tool_returns_the_text(team, team_tool_server, mcp_server):
    tool = by_name(await tools_for_team(team.pk))["get_weather"]
    result = await call_tool(tool, {"city": "Lyon"})
    assert result.content == "Sunny in Lyon, 21 °C"
    assert result.is_error is False
    assert result.elapsed > 0
    assert mcp_server.calls == [("get_weather", {"city": "Lyon"})]


async def test_a_failing_tool_is_an_error_result(team, team_tool_server):
    tool = by_name(await tools_for_team(team.pk))["broken"]
    result = await call_tool(tool, {})
    assert result.is_error is True
    assert "broken" in result.content


async def test_bad_arguments_are_an_error_result(team, team_tool_server):
    tool = by_name(await tools_for_team(team.pk))["get_weather"]
    result = await call_tool(tool, {"town": "Lyon"})
    assert result.is_error is True
    assert result.content


async def test_a_slow_tool_times_out(team, team_tool_server, mcp_server):
    await ToolServer.objects.filter(pk=team_tool_server.pk).aupdate(timeout=1)
    tool = by_name(await tools_for_team(team.pk))["slow_lookup"]
    assert tool.timeout == 1.0
    result = await call_tool(tool, {"seconds": 20})
    assert result.is_error is True
    assert result.content == "The tool server did not answer within 1 seconds."
    assert mcp_server.record.finished_lookups == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30.0, "30"), (0.4998236, "0.5"), (2.25, "2.2"), (17.34, "17"), (0.01, "0.1")],
)
def test_time_limits_are_said_as_people_read_them(seconds, text):
    assert mcp_client.seconds_text(seconds) == text


async def test_a_server_that_went_away_is_an_error_result(team, team_tool_server, mcp_server):
    tool = by_name(await tools_for_team(team.pk))["get_weather"]
    await sync_to_async(mcp_server.stop)()
    result = await call_tool(tool, {"city": "Lyon"})
    assert result.is_error is True
    assert result.content.startswith("Could not connect to the tool server at 127.0.0.1")


async def test_a_server_that_goes_away_mid_call_says_the_tool_may_have_run(
    team, team_tool_server, mcp_server
):
    """Not "could not connect" (its reconnection attempts, refused): the call went out, and
    the model must not take it that the tool did not run."""
    tool = by_name(await tools_for_team(team.pk))["slow_lookup"]
    task = asyncio.create_task(call_tool(tool, {"seconds": 20}))
    while not mcp_server.calls:
        await asyncio.sleep(0.02)
    await sync_to_async(mcp_server.stop)()
    result = await task
    assert (result.content, result.is_error) == (
        "The tool server at 127.0.0.1 closed the connection before answering: the tool may"
        " or may not have run.",
        True,
    )


async def test_cancelling_a_call_propagates(team, team_tool_server, mcp_server):
    tool = by_name(await tools_for_team(team.pk))["slow_lookup"]
    task = asyncio.create_task(call_tool(tool, {"seconds": 20}))
    while not mcp_server.calls:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert mcp_server.record.finished_lookups == 0


async def test_a_tool_disabled_since_the_list_was_read_is_not_called(
    team, team_tool_server, mcp_server
):
    tool = by_name(await tools_for_team(team.pk))["create_ticket"]
    await Tool.objects.filter(name="create_ticket").aupdate(enabled=False)
    result = await call_tool(tool, {"title": "Printer"})
    assert result.is_error is True
    assert result.content == "The tool create_ticket is no longer available."
    assert mcp_server.record.tickets == []


async def test_calls_go_through_the_network_guard(team, team_tool_server, settings, mcp_server):
    tool = by_name(await tools_for_team(team.pk))["get_weather"]
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = False
    result = await call_tool(tool, {"city": "Lyon"})
    assert result.is_error is True
    assert "must use https" in result.content
    assert mcp_server.calls == []


@pytest.fixture(params=[False, True], ids=["event-stream", "json"])
def extras_server(request, settings, team, owner):
    """The test MCP server with its extra tools, added to `team`; it answers in an event
    stream or in plain JSON bodies."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    with run_tool_server(extras=True, json_response=request.param) as running:
        server = ToolServer.objects.create(
            team=team, name="reports", url=running.url, created_by=owner
        )
        store_listing(server, async_to_sync(fetch_listing)(running.url, "", server.timeout))
        yield running


async def test_a_result_is_returned_as_sent_even_if_it_breaks_its_output_schema(
    team, extras_server
):
    """The tool ran: the model reads what it said, not "not an MCP server", and the call is
    the one request (no second list of the tools to check the result against)."""
    tool = by_name(await tools_for_team(team.pk))["count_tickets"]
    extras_server.record.methods.clear()
    result = await call_tool(tool, {})
    assert (result.content, result.is_error) == ("3 tickets are open", False)
    assert "tools/list" not in extras_server.record.methods
    assert "tools/call" in extras_server.record.methods


@pytest.mark.parametrize("size", [20_000, 1_500_000])
async def test_a_long_result_is_cut_once_saying_how_much(team, extras_server, size):
    """Past the SDK's 1 MiB for one message too: read whole, then cut to what the model gets."""
    tool = by_name(await tools_for_team(team.pk))["report"]
    result = await call_tool(tool, {"size": size})
    assert result.is_error is False and len(result.content) == size
    kept = tooling.capped(result.content)
    assert kept.startswith("r" * tooling.RESULT_MAX_CHARS)
    cut = size - tooling.RESULT_MAX_CHARS
    assert kept.endswith(f"\n[The tool's result was cut: {cut:,} more characters]")
    assert tooling.capped("short") == "short"


async def test_a_result_past_the_size_read_whole_is_an_error_result(team, extras_server):
    """A JSON body is read no further than an event of an event stream is."""
    tool = by_name(await tools_for_team(team.pk))["report"]
    result = await call_tool(tool, {"size": mcp_client.MAX_MESSAGE_BYTES + 1000})
    assert result.is_error is True
    assert len(result.content) < 200 and "8" in result.content


async def test_a_server_that_never_ends_the_session_still_gives_its_answer(settings, team, owner):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    with run_tool_server(hang_on_close=True) as running:
        server = await ToolServer.objects.acreate(
            team=team, name="sticky", url=running.url, created_by=owner, timeout=5
        )
        listing = await fetch_listing(running.url, "", server.timeout)
        assert listing.error == ""
        await sync_to_async(store_listing)(server, listing)
        tool = by_name(await tools_for_team(team.pk))["get_weather"]
        result = await call_tool(tool, {"city": "Paris"})
    assert (result.content, result.is_error) == ("Sunny in Paris, 21 °C", False)


async def test_a_result_quoting_the_token_back_never_shows_it(settings, team, owner):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    token = "mcp-secret-Hq20-never-shown"
    with run_tool_server(token=token, extras=True) as running:
        server = await ToolServer.objects.acreate(
            team=team,
            name="reports",
            url=running.url,
            token_encrypted=crypto.encrypt(token),
            created_by=owner,
        )
        listing = await fetch_listing(running.url, token, server.timeout)
        await sync_to_async(store_listing)(server, listing)
        tool = by_name(await tools_for_team(team.pk))["whoami"]
        result = await call_tool(tool, {})
    assert running.calls == [("whoami", {})]
    assert (result.content, result.is_error) == ("You are Bearer [redacted]", False)


def test_a_result_quoting_the_token_back_in_json_never_shows_it(settings, team, owner):
    """Structured content goes to the model as JSON text, which writes a quote or a backslash
    of the token escaped (a tool's JSON text does too): hidden all the same."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    token = 'mcp"secret\\Hq20'
    answer = {"content": [], "structuredContent": {"caller": f"Bearer {token}"}}
    with run_tool_server(token=token, call_result=json.dumps(answer)) as running:
        server = ToolServer.objects.create(
            team=team,
            name="echo",
            url=running.url,
            token_encrypted=crypto.encrypt(token),
            created_by=owner,
        )
        store_listing(server, async_to_sync(fetch_listing)(running.url, token, server.timeout))
        tool = by_name(registry.available_tools(team.pk))["get_weather"]
        result = async_to_sync(call_tool)(tool, {"city": "Paris"})
    assert (result.content, result.is_error) == ('{"caller": "Bearer [redacted]"}', False)


def test_a_call_the_server_dropped_unanswered_says_the_tool_may_have_run(settings, team, owner):
    """The server took the call and its stream ended with no answer (a crash, a proxy's cut):
    not "answered with an error", which the model would read as the tool's refusal."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    with run_tool_server(drop_calls=True) as running:
        server = ToolServer.objects.create(team=team, name="odd", url=running.url, created_by=owner)
        store_listing(server, async_to_sync(fetch_listing)(running.url, "", server.timeout))
        tool = by_name(registry.available_tools(team.pk))["create_ticket"]
        result = async_to_sync(call_tool)(tool, {"title": "Printer"})
    assert (result.content, result.is_error) == (
        "The tool server at 127.0.0.1 closed the connection before answering: the tool may"
        " or may not have run.",
        True,
    )


def test_a_tool_list_quoting_the_token_back_never_shows_it(settings):
    """A server whose tool descriptions or schemas quote the token (a help text naming the
    header it was called with): members and the model read them, so the token is hidden."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    token = "mcp-listing-secret-77"
    listed = [
        {
            "name": "whoami",
            "description": f"Says who calls: here Bearer {token}.",
            "inputSchema": {
                "type": "object",
                "properties": {"as": {"type": "string", "description": f"default {token}"}},
                "examples": [{"as": token}],
            },
        }
    ]
    with run_tool_server(token=token, tools=json.dumps(listed)) as running:
        listing = async_to_sync(fetch_listing)(running.url, token, 10)
    [tool] = listing.tools
    assert tool.description == "Says who calls: here Bearer [redacted]."
    assert token not in json.dumps(tool.input_schema)
    assert tool.input_schema["properties"]["as"]["description"] == "default [redacted]"
    assert tool.input_schema["examples"] == [{"as": "[redacted]"}]


async def test_a_short_token_stored_before_the_minimum_is_hidden_only_as_a_whole_word(
    settings, team, owner
):
    """Tokens are at least 8 characters now; one stored before is still sent, and hidden
    where it stands alone, not inside the words and numbers of every result."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    with run_tool_server(token="ab", extras=True) as running:
        server = await ToolServer.objects.acreate(
            team=team,
            name="reports",
            url=running.url,
            token_encrypted=crypto.encrypt("ab"),
            created_by=owner,
        )
        listing = await fetch_listing(running.url, "ab", server.timeout)
        await sync_to_async(store_listing)(server, listing)
        tools = by_name(await tools_for_team(team.pk))
        weather = await call_tool(tools["get_weather"], {"city": "Kabul"})
        who = await call_tool(tools["whoami"], {})
    assert (weather.content, weather.is_error) == ("Sunny in Kabul, 21 °C", False)
    assert (who.content, who.is_error) == ("You are Bearer [redacted]", False)


def test_tool_servers_are_asked_for_uncompressed_answers(settings, mcp_server):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    assert async_to_sync(fetch_listing)(mcp_server.url, "", 10).error == ""
    assert mcp_server.record.encodings and set(mcp_server.record.encodings) == {"identity"}


def test_a_compressed_answer_is_refused_unread(settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    with run_tool_server(json_response=True, gzip=True) as running:
        listing = async_to_sync(fetch_listing)(running.url, "", 10)
    assert listing.error == (
        "The tool server at 127.0.0.1 sent a compressed answer, which this site asks not to get"
        " (its size is unknown)."
    )


async def test_a_json_body_past_the_size_says_so(settings, team, owner):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    with run_tool_server(extras=True, json_response=True) as running:
        server = await ToolServer.objects.acreate(
            team=team, name="reports", url=running.url, created_by=owner
        )
        listing = await fetch_listing(running.url, "", server.timeout)
        await sync_to_async(store_listing)(server, listing)
        tool = by_name(await tools_for_team(team.pk))["report"]
        result = await call_tool(tool, {"size": 3 * mcp_client.MAX_MESSAGE_BYTES})
    assert (result.content, result.is_error) == (
        "The tool server at 127.0.0.1 sent a message larger than 8 MiB: ask for less.",
        True,
    )


def test_a_list_of_more_than_200_tools_is_cut_and_the_admins_are_told(settings, team, owner):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    with run_tool_server(filler=250) as running:
        server = ToolServer.objects.create(
            team=team, name="many", url=running.url, created_by=owner
        )
        store_listing(server, async_to_sync(fetch_listing)(running.url, "", server.timeout))
    assert server.status == ServerStatus.UP and server.tools.count() == 200
    assert (
        server.last_error == "The server lists more than 200 tools: only the first 200 are offered."
    )


def test_result_text_joins_text_and_uses_structured_content_only_without_text():
    both = CallToolResult(
        content=[TextContent(type="text", text="a"), TextContent(type="text", text="b")],
        structured_content={"result": "ab"},
    )
    assert registry.result_text(both) == "a\nb"
    structured = CallToolResult(content=[], structured_content={"temp": 21, "city": "Lyon"})
    assert registry.result_text(structured) == '{"temp": 21, "city": "Lyon"}'
    image = CallToolResult(content=[ImageContent(type="image", data="AAAA", mime_type="image/png")])
    assert registry.result_text(image) == "[image content left out]"


def test_content_of_a_form_mcp_does_not_allow_is_left_out_with_a_note_not_the_result(
    settings, team, owner
):
    """The tool ran; a block of a type the protocol has no room for (a newer server's), or a
    text block without its text, made the whole result "not an MCP server": the model, told
    the call failed, would call a tool that changes things again. The rest is its result."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    blocks = [
        {"type": "text", "text": "Ticket T-7 created"},
        {"type": "video", "url": "https://example.com/clip"},
        {"type": "text"},
    ]
    with run_tool_server(call_result=json.dumps({"content": blocks})) as running:
        server = ToolServer.objects.create(team=team, name="odd", url=running.url, created_by=owner)
        store_listing(server, async_to_sync(fetch_listing)(running.url, "", server.timeout))
        tool = by_name(registry.available_tools(team.pk))["create_ticket"]
        result = async_to_sync(call_tool)(tool, {"title": "Printer"})
    assert result.is_error is False
    assert result.content == (
        "Ticket T-7 created\n[video content left out]\n[text content left out]"
    )


def call_answered_with(settings, team, owner, answer: dict):
    """create_ticket called on a server answering every tools/call with `answer`."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    with run_tool_server(call_result=json.dumps(answer)) as running:
        server = ToolServer.objects.create(team=team, name="odd", url=running.url, created_by=owner)
        store_listing(server, async_to_sync(fetch_listing)(running.url, "", server.timeout))
        tool = by_name(registry.available_tools(team.pk))["create_ticket"]
        return async_to_sync(call_tool)(tool, {"title": "Printer"})


@pytest.mark.parametrize("structured", ["T-7", [1, 2], 7])
def test_structured_content_that_is_no_object_is_left_out_with_a_note_not_the_result(
    settings, team, owner, structured
):
    """As a content block MCP does not allow: the tool ran and the rest of its result stands."""
    answer = {"content": [{"type": "text", "text": "Ticket T-7 created"}]}
    result = call_answered_with(settings, team, owner, {**answer, "structuredContent": structured})
    assert (result.content, result.is_error) == (
        "Ticket T-7 created\n[structured content left out]",
        False,
    )


@pytest.mark.parametrize(
    "answer",
    [
        {"content": "Ticket T-7 created"},
        {"content": [{"type": "text", "text": "Ticket T-7 created"}], "isError": "maybe"},
        {"structuredContent": {"ticket": "T-7"}, "content": {"type": "text"}},
    ],
)
def test_a_result_malformed_as_a_whole_says_so_not_that_the_server_is_unreachable(
    settings, team, owner, answer
):
    """The server answered the call: the tool may well have run, and the model must not be
    sent to check a URL (or to run a tool that changes things again as if it had failed)."""
    result = call_answered_with(settings, team, owner, answer)
    assert result.is_error is True
    assert result.content == (
        "The tool server at 127.0.0.1 answered, but its result is in a form MCP does not allow,"
        " so it was left out: the tool may have run all the same."
    )


def test_a_json_rpc_error_sent_with_an_http_error_status_is_told_to_the_model(
    settings, team, owner
):
    """A server may refuse a call (arguments that do not match the schema) with HTTP 400 and
    the JSON-RPC error in the body: the model gets the server's reason, to call it better."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    with run_tool_server(call_error="Invalid params: 'title' is required") as running:
        server = ToolServer.objects.create(team=team, name="odd", url=running.url, created_by=owner)
        store_listing(server, async_to_sync(fetch_listing)(running.url, "", server.timeout))
        tool = by_name(registry.available_tools(team.pk))["create_ticket"]
        result = async_to_sync(call_tool)(tool, {"name": "Printer"})
    assert (result.content, result.is_error) == (
        "The tool server at 127.0.0.1 answered with HTTP 400: Invalid params: 'title' is required",
        True,
    )


async def test_a_token_stored_before_header_checks_says_to_enter_it_again(
    team, team_tool_server, mcp_server
):
    """Tokens were not checked for what a header holds when they were first stored."""
    token = "jeton-secret-é"
    encrypted = crypto.encrypt(token)
    await ToolServer.objects.filter(pk=team_tool_server.pk).aupdate(token_encrypted=encrypted)
    tool = by_name(await tools_for_team(team.pk))["get_weather"]
    result = await call_tool(tool, {"city": "Lyon"})
    assert result.is_error is True
    assert result.content == (
        "The tool server's saved token cannot be sent in an HTTP header (it holds characters"
        " other than printable ASCII): an admin must enter it again."
    )
    assert mcp_server.calls == []
