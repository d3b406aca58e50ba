"""Adding, refreshing and changing tool servers: what is stored, kept and audited."""

import json
import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from chatapp.teams import crypto
from chatapp.teams.models import AuditEvent
from chatapp.tools import actions, mcp_client
from chatapp.tools.models import (
    MAX_DESCRIPTION_CHARS,
    MAX_SCHEMA_CHARS,
    ServerStatus,
    Tool,
    ToolServer,
)
from tests.databases import uses_postgres, wait_for_lock_waiters
from tests.support.mcp_server import run_tool_server

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "mcp-token-Zq81-never-shown"


@pytest.fixture(autouse=True)
def private_allowed(settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True


def add(owner, team, url, **fields):
    fields.setdefault("timeout", 10)
    return async_to_sync(actions.add_server)(owner, team, name="helpdesk", url=url, **fields)


def test_adding_a_server_lists_and_stores_its_tools(owner, team, mcp_server):
    server = add(owner, team, mcp_server.url)
    assert server.status == ServerStatus.UP
    assert server.refreshed_at is not None
    tools = {tool.name: tool for tool in server.tools.all()}
    assert set(tools) == {"get_weather", "create_ticket", "slow_lookup", "broken"}
    assert tools["get_weather"].read_only is True
    assert tools["create_ticket"].read_only is False
    assert all(tool.enabled and not tool.ask_first for tool in tools.values())
    assert tools["get_weather"].input_schema["required"] == ["city"]
    event = AuditEvent.objects.get(action="tool_server.add")
    assert event.details["url"] == mcp_server.url
    assert event.team == team and event.actor == owner


def test_the_token_is_sent_encrypted_at_rest_and_never_audited(owner, team):
    with run_tool_server(token=TOKEN) as protected:
        server = add(owner, team, protected.url, token=TOKEN)
        assert server.status == ServerStatus.UP
        assert f"Bearer {TOKEN}" in protected.record.authorizations
    stored = ToolServer.objects.get(pk=server.pk)
    assert stored.has_token and TOKEN not in stored.token_encrypted
    for event in AuditEvent.objects.all():
        assert TOKEN not in f"{event.summary} {event.details}"


def test_a_wrong_token_marks_the_server_down_with_the_reason(owner, team):
    with run_tool_server(token=TOKEN) as protected:
        server = add(owner, team, protected.url, token="wrong-token")
    assert server.status == ServerStatus.DOWN
    assert "refused the request (HTTP 401): check the server's token" in server.last_error
    assert not server.tools.exists()


def test_an_unreachable_server_is_stored_down(owner, team, mcp_server):
    mcp_server.stop()
    server = add(owner, team, mcp_server.url)
    assert server.status == ServerStatus.DOWN
    assert server.last_error.startswith("Could not connect to the tool server at 127.0.0.1")


def test_refresh_keeps_the_admins_choices_and_marks_a_server_down(owner, team, mcp_server):
    server = add(owner, team, mcp_server.url)
    actions.set_tool_choices(
        owner, server, {"get_weather": {"ask_first": True}, "broken": {"enabled": False}}
    )
    Tool.objects.create(server=server, name="retired_tool")
    async_to_sync(actions.refresh_server)(owner, server)
    tools = {tool.name: tool for tool in server.tools.all()}
    assert "retired_tool" not in tools
    assert tools["get_weather"].ask_first is True
    assert tools["broken"].enabled is False

    mcp_server.stop()
    async_to_sync(actions.refresh_server)(owner, server)
    server.refresh_from_db()
    assert server.status == ServerStatus.DOWN
    assert server.tools.count() == 4  # the last known list stays for the page
    assert AuditEvent.objects.filter(action="tool_server.refresh").count() == 2


def test_a_new_url_needs_the_token_again(owner, team, mcp_server):
    with run_tool_server(token=TOKEN) as protected:
        server = add(owner, team, protected.url, token=TOKEN)
    with pytest.raises(actions.ToolActionError) as refused:
        async_to_sync(actions.change_server)(owner, server, url=mcp_server.url)
    assert refused.value.code == "token_required"
    changed = async_to_sync(actions.change_server)(owner, server, url=mcp_server.url, token="")
    assert changed.url == mcp_server.url and not changed.has_token
    assert changed.status == ServerStatus.UP
    event = AuditEvent.objects.get(action="tool_server.update")
    assert event.details["token"] == "removed"


def test_names_are_unique_in_a_team(owner, team, mcp_server):
    add(owner, team, mcp_server.url)
    with pytest.raises(actions.ToolActionError) as refused:
        add(owner, team, mcp_server.url)
    assert refused.value.code == "name_taken"
    assert ToolServer.objects.count() == 1


def test_a_taken_name_is_refused_before_connecting(owner, team, mcp_server):
    add(owner, team, mcp_server.url)
    with run_tool_server() as other:
        with pytest.raises(actions.ToolActionError) as refused:
            add(owner, team, other.url)
        assert refused.value.code == "name_taken" and refused.value.field == "name"
        assert other.record.methods == [] and other.record.authorizations == []
    assert ToolServer.objects.count() == 1


def test_renaming_to_a_taken_name_is_refused_before_connecting(owner, team, mcp_server):
    add(owner, team, mcp_server.url)
    second = async_to_sync(actions.add_server)(
        owner, team, name="weather", url=mcp_server.url, timeout=10
    )
    with run_tool_server() as other:
        with pytest.raises(actions.ToolActionError) as refused:
            async_to_sync(actions.change_server)(
                owner, second, name=" helpdesk ", url=other.url, token=""
            )
        assert refused.value.code == "name_taken"
        assert other.record.methods == []
    second.refresh_from_db()
    assert (second.name, second.url) == ("weather", mcp_server.url)


ODD_SCHEMAS = """[
    {"name": "lookup", "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}},
    {"name": "bounded", "inputSchema": {"type": "object", "properties": {"n": {"maximum": NaN}}}},
    {"name": "huge", "inputSchema": {"type": "object", "properties": {"n": {"minimum": 1e999}}}},
    {"name": "wrong", "inputSchema": {"type": "object", "properties": {"q": {"type": 7}}}}
]"""


def test_tools_whose_schema_is_not_valid_are_left_out_and_named(owner, team):
    with run_tool_server(tools=ODD_SCHEMAS) as odd:
        server = add(owner, team, odd.url)
    assert server.status == ServerStatus.UP
    assert [tool.name for tool in server.tools.all()] == ["lookup"]
    assert server.last_error == (
        "Left out 3 tools whose input schema is not a valid JSON Schema: bounded, huge, wrong."
    )


def test_a_tool_whose_listing_mcp_does_not_allow_is_left_out_not_the_whole_list(owner, team):
    """A schema that is no object (or no object schema), a description that is no text: the
    SDK would refuse the whole list for one such tool, and every tool of the server be lost."""
    listed = [
        {"name": "lookup", "inputSchema": {"type": "object"}},
        {"name": "plain", "inputSchema": "text"},
        {"name": "listed", "inputSchema": [{"type": "object"}]},
        {"name": "stringy", "inputSchema": {"type": "string"}},
        {"name": "counted", "description": 5, "inputSchema": {"type": "object"}},
        {"name": 7, "inputSchema": {"type": "object"}},
    ]
    with run_tool_server(tools=json.dumps(listed)) as odd:
        server = add(owner, team, odd.url)
    assert server.status == ServerStatus.UP
    assert [tool.name for tool in server.tools.all()] == ["lookup"]
    assert server.last_error == (
        "Left out 5 tools the server describes in a form MCP does not allow (a name, description"
        " or input schema of the wrong type): 7, counted, listed, plain, stringy."
    )


def test_a_name_listed_twice_is_taken_from_its_first_listing_only(owner, team):
    """Either offered or named as left out, never both: its first listing decides, whatever
    is wrong with it, and a later one of the same name is not offered in its place."""
    listed = [
        {"name": "lookup", "inputSchema": {"type": "string"}},
        {"name": "lookup", "inputSchema": {"type": "object"}},
        {"name": "search", "inputSchema": {"type": "object"}, "description": "first"},
        {"name": "search", "inputSchema": "text"},
        {"name": "search", "inputSchema": {"type": "object"}, "description": "third"},
        {"name": "count", "inputSchema": {"type": "object", "properties": {"n": {"type": 7}}}},
        {"name": "count", "inputSchema": {"type": "object"}},
    ]
    with run_tool_server(tools=json.dumps(listed)) as odd:
        server = add(owner, team, odd.url)
    assert server.status == ServerStatus.UP
    assert [(tool.name, tool.description) for tool in server.tools.all()] == [("search", "first")]
    assert server.last_error == (
        "Left out 1 tool the server describes in a form MCP does not allow (a name, description"
        " or input schema of the wrong type): lookup. Left out 1 tool whose input schema is not"
        " a valid JSON Schema: count."
    )


def test_tools_past_the_size_offered_to_the_model_are_left_out_and_named(owner, team):
    wordy = "w" * (MAX_DESCRIPTION_CHARS + 1)
    fields = {f"f{number}": {"type": "string"} for number in range(MAX_SCHEMA_CHARS // 20)}
    just_fits = "w" * MAX_DESCRIPTION_CHARS
    listed = [
        {"name": "lookup", "description": just_fits, "inputSchema": {"type": "object"}},
        {"name": "wordy", "description": wordy, "inputSchema": {"type": "object"}},
        {"name": "sprawling", "inputSchema": {"type": "object", "properties": fields}},
    ]
    with run_tool_server(tools=json.dumps(listed)) as odd:
        server = add(owner, team, odd.url)
    assert server.status == ServerStatus.UP
    assert [tool.name for tool in server.tools.all()] == ["lookup"]
    assert server.last_error == (
        "Left out 2 tools whose description or input schema is too long to offer to the model:"
        " sprawling, wordy."
    )


def test_unknown_tool_names_change_nothing(owner, team, mcp_server):
    server = add(owner, team, mcp_server.url)
    with pytest.raises(actions.ToolActionError):
        actions.set_tool_choices(owner, server, {"get_weather": {"enabled": False}, "nope": {}})
    assert server.tools.get(name="get_weather").enabled is True


def test_removing_a_server_is_audited(owner, team, mcp_server):
    server = add(owner, team, mcp_server.url)
    actions.delete_server(owner, server)
    assert not ToolServer.objects.exists() and not Tool.objects.exists()
    assert AuditEvent.objects.get(action="tool_server.remove").details["server"] == "helpdesk"


def test_a_server_two_admins_remove_at_once_is_removed_once(owner, team, mcp_server):
    server = add(owner, team, mcp_server.url)
    shown = ToolServer.objects.get(pk=server.pk)  # as the second admin's page read it
    actions.delete_server(owner, server)
    actions.delete_server(owner, shown)
    assert AuditEvent.objects.filter(action="tool_server.remove").count() == 1


@pytest.mark.skipif(not uses_postgres(), reason="two connections at once need PostgreSQL")
def test_two_refreshes_at_once_store_each_tool_once(owner, team, mcp_server):
    server = add(owner, team, mcp_server.url)
    listing = async_to_sync(actions.fetch_listing)(mcp_server.url, "", 10)
    barrier = threading.Barrier(2)
    errors = []

    def refresh_in_a_tab():
        try:
            barrier.wait()
            actions._refresh(owner, ToolServer.objects.get(pk=server.pk), listing)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    server.tools.all().delete()  # both refreshes find every tool new
    tabs = [threading.Thread(target=refresh_in_a_tab) for _ in range(2)]
    for tab in tabs:
        tab.start()
    for tab in tabs:
        tab.join()
    assert errors == []
    assert server.tools.count() == 4
    assert AuditEvent.objects.filter(action="tool_server.refresh").count() == 2


@pytest.mark.skipif(not uses_postgres(), reason="two connections at once need PostgreSQL")
def test_choices_saved_as_a_refresh_drops_that_tool_change_nothing(owner, team, mcp_server):
    """An admin saves a choice for a tool while a refresh, in another tab, is storing a list
    without it: the choice waits for the refresh, then is refused as naming no tool."""
    server = add(owner, team, mcp_server.url)
    outcome = []

    def save_choice_in_another_tab():
        try:
            actions.set_tool_choices(owner, server, {"broken": {"enabled": False}})
            outcome.append("saved")
        except Exception as exc:
            outcome.append(exc)
        finally:
            connection.close()

    tab = threading.Thread(target=save_choice_in_another_tab)
    with transaction.atomic():  # the refresh, as _refresh holds it
        actions._hold(server)
        server.tools.filter(name="broken").delete()
        tab.start()
        wait_for_lock_waiters()  # the other tab waits for the refresh
    tab.join()
    assert len(outcome) == 1 and isinstance(outcome[0], actions.ToolActionError), outcome
    assert outcome[0].code == "invalid" and outcome[0].field == "tools"
    assert not AuditEvent.objects.filter(action="tool.update").exists()


def test_a_refresh_never_stores_the_list_of_an_address_changed_meanwhile(owner, team, mcp_server):
    server = add(owner, team, mcp_server.url)
    stale = ToolServer.objects.get(pk=server.pk)  # a refresh started here, at the old address
    old_list = async_to_sync(actions.fetch_listing)(mcp_server.url, "", 10)
    with run_tool_server(token=TOKEN) as moved:
        async_to_sync(actions.change_server)(owner, server, url=moved.url, token=TOKEN)
    Tool.objects.filter(server=server).update(description="listed at the new address")
    with pytest.raises(actions.ToolActionError) as refused:
        actions._refresh(owner, stale, old_list)
    assert refused.value.code == "changed"
    assert set(server.tools.values_list("description", flat=True)) == {"listed at the new address"}
    assert not AuditEvent.objects.filter(action="tool_server.refresh").exists()


def test_a_server_removed_while_it_was_refreshed_is_not_found(owner, team, mcp_server):
    server = add(owner, team, mcp_server.url)
    ToolServer.objects.filter(pk=server.pk).delete()  # by another admin, while connecting
    with pytest.raises(actions.ToolActionError) as refused:
        async_to_sync(actions.refresh_server)(owner, server)
    assert refused.value.code == "not_found"
    with pytest.raises(actions.ToolActionError) as refused:
        async_to_sync(actions.change_server)(owner, server, name="renamed", token="")
    assert refused.value.code == "not_found"
    assert not ToolServer.objects.exists() and not Tool.objects.exists()
    assert not AuditEvent.objects.filter(action__in=["tool_server.refresh", "tool_server.update"])


def test_refreshing_with_a_token_stored_before_header_checks_says_to_enter_it_again(
    owner, team, mcp_server
):
    server = add(owner, team, mcp_server.url)
    ToolServer.objects.filter(pk=server.pk).update(token_encrypted=crypto.encrypt("jeton-é-123"))
    server.refresh_from_db()
    async_to_sync(actions.refresh_server)(owner, server)
    server.refresh_from_db()
    assert server.status == ServerStatus.DOWN
    assert server.last_error == (
        "The tool server's saved token cannot be sent in an HTTP header (it holds characters"
        " other than printable ASCII): an admin must enter it again."
    )


def listing_of(count: int, description: str = "") -> actions.Listing:
    tools = [
        mcp_client.ListedTool(f"tool_{n:03}", description, {"type": "object"}, n % 2 == 0)
        for n in range(count)
    ]
    return actions.Listing(tools=tools, error="")


def refresh_queries(owner, team, name: str, count: int) -> tuple[int, int]:
    """The statements of a refresh storing `count` new tools, then of one rewriting them."""
    server = ToolServer.objects.create(team=team, name=name, url="https://9.9.9.9/")
    counts = []
    for description in ("first", "second"):
        with CaptureQueriesContext(connection) as queries:
            actions._refresh(owner, server, listing_of(count, description))
        counts.append(len(queries))
    return counts[0], counts[1]


def test_a_refresh_stores_any_number_of_tools_in_the_same_statements(owner, team):
    assert refresh_queries(owner, team, "small", 3) == refresh_queries(owner, team, "large", 30)
    stored = Tool.objects.filter(server__name="large").order_by("name")
    assert stored.count() == 30
    assert {tool.description for tool in stored} == {"second"}
    assert [tool.read_only for tool in stored[:3]] == [True, False, True]
    assert all(tool.enabled and not tool.ask_first for tool in stored)


def test_choices_for_any_number_of_tools_are_saved_in_the_same_statements(owner, team):
    def choices_queries(name: str, count: int) -> int:
        server = ToolServer.objects.create(team=team, name=name, url="https://9.9.9.9/")
        actions._refresh(owner, server, listing_of(count))
        choices = {f"tool_{n:03}": {"enabled": False, "ask_first": True} for n in range(count)}
        with CaptureQueriesContext(connection) as queries:
            actions.set_tool_choices(owner, server, choices)
        return len(queries)

    assert choices_queries("small", 3) == choices_queries("large", 30)
    large = Tool.objects.filter(server__name="large")
    assert large.filter(enabled=False, ask_first=True).count() == 30
    event = AuditEvent.objects.filter(action="tool.update").latest("id")
    assert len(event.details["tools"]) == 30
