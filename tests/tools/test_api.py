"""The tool servers' JSON API: who may do what, what it answers, and what bad input does."""

import json
import logging

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chatapp.teams.models import AuditEvent
from chatapp.tools import actions
from chatapp.tools.models import ServerStatus, Tool, ToolServer
from tests.support.mcp_server import run_tool_server

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "mcp-token-Xk93-never-shown"


@pytest.fixture(autouse=True)
def private_allowed(settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def clients(owner, admin_member, member, outsider):
    return {
        "owner": logged_in(owner),
        "admin": logged_in(admin_member),
        "member": logged_in(member),
        "outsider": logged_in(outsider),
        "anonymous": Client(),
    }


def base(team) -> str:
    return f"/api/teams/{team.pk}/tool-servers/"


def send(client: Client, method: str, url: str, body: dict | None = None):
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, json.dumps(body), content_type="application/json")


def test_owner_adds_a_server_and_gets_its_tools(clients, team, mcp_server):
    response = send(
        clients["owner"], "post", base(team), {"name": "helpdesk", "url": mcp_server.url}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "helpdesk" and body["url"] == mcp_server.url
    assert body["status"] == "up" and body["last_error"] == "" and body["has_token"] is False
    assert body["timeout"] == 30
    tools = {tool["name"]: tool for tool in body["tools"]}
    assert set(tools) == {"get_weather", "create_ticket", "slow_lookup", "broken"}
    assert tools["get_weather"]["description"] == "Today's weather in a city."
    assert tools["get_weather"]["enabled"] is True
    assert tools["get_weather"]["needs_approval"] is False
    assert tools["create_ticket"]["needs_approval"] is True
    assert tools["get_weather"]["input_schema"]["properties"]["city"]["type"] == "string"
    assert ToolServer.objects.get(pk=body["id"]).team == team


def test_a_listing_holding_nul_characters_is_stored_as_text(clients, team):
    with run_tool_server(odd_text=True) as server:
        response = send(clients["owner"], "post", base(team), {"name": "dumps", "url": server.url})
    assert response.status_code == 201
    tools = {tool["name"]: tool for tool in response.json()["tools"]}
    dump = tools["read_dump"]
    assert dump["description"] == "Read a dump (its header is PK\x03\x04\ufffd\ufffd)."
    assert dump["input_schema"]["properties"]["path"]["description"] == "where\ufffdit is"
    stored = Tool.objects.get(name="read_dump")
    assert stored.description == dump["description"]
    assert stored.input_schema == dump["input_schema"]


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_managers_change_refresh_and_remove(clients, who, team, team_tool_server):
    client, url = clients[who], f"{base(team)}{team_tool_server.pk}/"
    changed = send(
        client,
        "patch",
        url,
        {"timeout": 5, "tools": {"get_weather": {"ask_first": True}, "broken": {"enabled": False}}},
    )
    assert changed.status_code == 200, changed.content
    tools = {tool["name"]: tool for tool in changed.json()["tools"]}
    assert changed.json()["timeout"] == 5
    assert tools["get_weather"]["ask_first"] is True and tools["get_weather"]["needs_approval"]
    assert tools["broken"]["enabled"] is False
    refreshed = send(client, "post", url + "refresh/")
    assert refreshed.status_code == 200
    assert {t["name"]: t for t in refreshed.json()["tools"]}["broken"]["enabled"] is False
    assert send(client, "delete", url).status_code == 204
    assert not ToolServer.objects.exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"tool.update", "tool_server.update", "tool_server.refresh"} <= actions
    assert "tool_server.remove" in actions


def test_members_read_but_may_not_change(clients, team, team_tool_server, mcp_server):
    member, url = clients["member"], f"{base(team)}{team_tool_server.pk}/"
    listed = send(member, "get", base(team))
    assert listed.status_code == 200
    assert listed.json()["can_manage"] is False
    assert [s["name"] for s in listed.json()["results"]] == ["helpdesk"]
    assert send(member, "get", url).status_code == 200
    before = list(Tool.objects.values())
    for method, target, body in [
        ("post", base(team), {"name": "mine", "url": mcp_server.url}),
        ("patch", url, {"tools": {"get_weather": {"enabled": False}}}),
        ("delete", url, None),
        ("post", url + "refresh/", None),
    ]:
        response = send(member, method, target, body)
        assert response.status_code == 403, (method, target)
        assert response.json()["error"]["code"] == "forbidden"
    assert list(Tool.objects.values()) == before
    assert ToolServer.objects.count() == 1


def test_a_server_error_holding_nul_characters_is_stored_as_text(clients, team):
    with run_tool_server(error="no\x00such method") as server:
        response = send(clients["owner"], "post", base(team), {"name": "odd", "url": server.url})
    assert response.status_code == 201
    assert response.json()["status"] == "down"
    assert response.json()["last_error"].endswith("answered with an error: no\ufffdsuch method")
    assert ToolServer.objects.get().last_error == response.json()["last_error"]


def test_managers_see_can_manage(clients, team, team_tool_server):
    assert send(clients["admin"], "get", base(team)).json()["can_manage"] is True


def test_outsiders_get_404_and_anonymous_401(clients, team, team_tool_server, mcp_server):
    url = f"{base(team)}{team_tool_server.pk}/"
    calls = [
        ("get", base(team), None),
        ("post", base(team), {"name": "x", "url": mcp_server.url}),
        ("get", url, None),
        ("patch", url, {"timeout": 5}),
        ("delete", url, None),
        ("post", url + "refresh/", None),
    ]
    for method, target, body in calls:
        assert send(clients["outsider"], method, target, body).status_code == 404
        assert send(clients["anonymous"], method, target, body).status_code == 401
    assert ToolServer.objects.count() == 1 and mcp_server.record.calls == []


def test_a_server_of_another_team_is_404(clients, owner, team, team_tool_server, make_user):
    other = type(team).objects.create(name="Other")
    theirs = ToolServer.objects.create(team=other, name="theirs", url="https://9.9.9.9/mcp")
    url = f"{base(team)}{theirs.pk}/"
    for method in ("get", "patch", "delete"):
        assert (
            send(clients["owner"], method, url, {} if method == "patch" else None).status_code
            == 404
        )
    assert send(clients["owner"], "post", url + "refresh/").status_code == 404
    assert ToolServer.objects.filter(pk=theirs.pk).exists()


def test_wrong_methods_are_405(clients, team, team_tool_server):
    assert send(clients["owner"], "put", base(team), {}).status_code == 405
    assert (
        send(clients["owner"], "get", f"{base(team)}{team_tool_server.pk}/refresh/").status_code
        == 405
    )


def test_a_refused_address_is_400_and_stores_nothing(clients, team, settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = False
    for url in ["https://127.0.0.1/mcp", "https://169.254.169.254/", "https://[::1]/mcp"]:
        response = send(clients["owner"], "post", base(team), {"name": "x", "url": url})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "url_refused"
        assert response.json()["error"]["field"] == "url"
    for url in ["http://9.9.9.9/mcp", "file:///etc/passwd", "https://u:p@9.9.9.9/mcp"]:
        response = send(clients["owner"], "post", base(team), {"name": "x", "url": url})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid"
    assert not ToolServer.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="tool").exists()


def test_a_server_that_is_down_is_stored_down(clients, team, mcp_server):
    mcp_server.stop()
    response = send(clients["owner"], "post", base(team), {"name": "gone", "url": mcp_server.url})
    assert response.status_code == 201
    assert response.json()["status"] == ServerStatus.DOWN
    assert response.json()["last_error"].startswith("Could not connect to the tool server")
    assert response.json()["tools"] == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "https://9.9.9.9/mcp"}, "name"),
        ({"name": "x"}, "url"),
        ({"name": "", "url": "https://9.9.9.9/mcp"}, "name"),
        ({"name": "x" * 41, "url": "https://9.9.9.9/mcp"}, "name"),
        ({"name": "x", "url": "https://9.9.9.9/mcp", "timeout": 0}, "timeout"),
        ({"name": "x", "url": "https://9.9.9.9/mcp", "timeout": 301}, "timeout"),
        ({"name": "x", "url": "https://9.9.9.9/mcp", "timeout": "5"}, "timeout"),
        ({"name": "x", "url": "https://9.9.9.9/mcp", "token": 5}, "token"),
        ({"name": "x", "url": "https://9.9.9.9/mcp", "token": "1234567"}, "token"),
        ({"name": "x", "url": "https://9.9.9.9/mcp", "extra": 1}, "extra"),
        ({"name": "x\x00", "url": "https://9.9.9.9/mcp"}, "name"),
    ],
)
def test_bad_bodies_are_400(clients, team, body, field):
    response = send(clients["owner"], "post", base(team), body)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert not ToolServer.objects.exists()


def test_a_bad_change_changes_nothing(clients, team, team_tool_server):
    url = f"{base(team)}{team_tool_server.pk}/"
    before = (list(ToolServer.objects.values()), list(Tool.objects.values()))
    for body in [
        {"tools": {"get_weather": {"enabled": False}, "no_such_tool": {"enabled": False}}},
        {"tools": {"get_weather": {"enabled": "no"}}},
        {"tools": {"get_weather": {"enabled": False}}, "timeout": 9999},
        {"tools": {"get_weather": {"enabled": False}}, "url": "file:///etc/passwd"},
        {"name": "bad/name!"},
        {"token": "ab"},
    ]:
        assert send(clients["owner"], "patch", url, body).status_code == 400, body
    assert (list(ToolServer.objects.values()), list(Tool.objects.values())) == before


def test_choices_sent_with_a_new_url_apply_to_the_tools_it_lists(clients, team, mcp_server):
    with run_tool_server(odd_text=True) as dumps:
        added = send(clients["owner"], "post", base(team), {"name": "dumps", "url": dumps.url})
    url = f"{base(team)}{added.json()['id']}/"
    choices = {"read_dump": {"enabled": False}, "get_weather": {"enabled": False}}
    body = {"url": mcp_server.url, "token": "", "tools": choices}
    response = send(clients["owner"], "patch", url, body)
    assert response.status_code == 200, response.json()
    tools = {tool["name"]: tool for tool in response.json()["tools"]}
    assert response.json()["url"] == mcp_server.url and "read_dump" not in tools
    assert tools["get_weather"]["enabled"] is False
    assert Tool.objects.get(name="get_weather").enabled is False


@pytest.mark.parametrize("token", ["jeton-sécret-42", "two words-1234", "tab\there-1234"])
def test_a_token_no_header_can_carry_is_refused_before_connecting(clients, team, mcp_server, token):
    """A token goes in the Authorization header, which holds printable ASCII without spaces:
    one it cannot carry is refused where it is entered, not stored to fail every call with a
    reason that blames the URL."""
    body = {"name": "accented", "url": mcp_server.url, "token": token}
    added = send(clients["owner"], "post", base(team), body)
    assert added.status_code == 400
    assert added.json()["error"]["field"] == "token"
    assert "ASCII" in added.json()["error"]["message"]
    assert not ToolServer.objects.exists() and mcp_server.record.methods == []

    created = send(clients["owner"], "post", base(team), {"name": "d", "url": mcp_server.url})
    url = f"{base(team)}{created.json()['id']}/"
    before, heard = list(ToolServer.objects.values()), len(mcp_server.record.authorizations)
    changed = send(clients["owner"], "patch", url, {"token": token})
    assert changed.status_code == 400 and changed.json()["error"]["field"] == "token"
    assert list(ToolServer.objects.values()) == before
    assert len(mcp_server.record.authorizations) == heard


def test_the_token_is_never_answered_audited_or_logged(clients, team, caplog):
    caplog.set_level(logging.DEBUG)
    with run_tool_server(token=TOKEN) as protected:
        created = send(
            clients["owner"],
            "post",
            base(team),
            {"name": "private", "url": protected.url, "token": TOKEN},
        )
        assert created.status_code == 201
        assert created.json()["status"] == "up" and created.json()["has_token"] is True
        url = f"{base(team)}{created.json()['id']}/"
        answers = [
            created,
            send(clients["owner"], "get", base(team)),
            send(clients["owner"], "get", url),
            send(clients["owner"], "post", url + "refresh/"),
            send(clients["owner"], "patch", url, {"token": TOKEN}),
            send(clients["member"], "get", base(team)),
            clients["owner"].get(f"/teams/{team.pk}/tools/"),
        ]
    for answer in answers:
        assert answer.status_code == 200 or answer.status_code == 201
        assert TOKEN.encode() not in answer.content
    for event in AuditEvent.objects.all():
        assert TOKEN not in f"{event.summary} {event.details}"
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    "said, shown",
    [
        (f"session for {TOKEN} has expired", "session for [redacted] has expired"),
        ("." * 190 + TOKEN, "." * 190 + "[redacted]"),  # where the message is cut
    ],
)
def test_a_server_error_quoting_the_token_never_shows_it(clients, team, said, shown):
    """tools.md: the token is write-only, whatever the server says back."""
    with run_tool_server(token=TOKEN, error=said) as server:
        created = send(
            clients["owner"],
            "post",
            base(team),
            {"name": "echoing", "url": server.url, "token": TOKEN},
        )
        url = f"{base(team)}{created.json()['id']}/"
        refreshed = send(clients["owner"], "post", url + "refresh/")
    assert created.status_code == 201 and created.json()["status"] == "down"
    assert created.json()["last_error"].endswith(f"answered with an error: {shown}")
    answers = [
        created,
        refreshed,
        send(clients["member"], "get", base(team)),
        clients["owner"].get(f"/teams/{team.pk}/tools/"),
    ]
    for answer in answers:
        assert answer.status_code == 200 or answer.status_code == 201
        assert TOKEN[:10].encode() not in answer.content
    assert TOKEN[:10] not in ToolServer.objects.get().last_error
    for event in AuditEvent.objects.all():
        assert TOKEN[:10] not in f"{event.summary} {event.details}"


def test_the_list_takes_the_same_queries_whatever_the_servers(clients, team, team_tool_server):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert send(clients["owner"], "get", base(team)).status_code == 200
        return len(queries)

    one = count()
    for n in range(3):
        extra = ToolServer.objects.create(team=team, name=f"more{n}", url="https://9.9.9.9/")
        Tool.objects.create(server=extra, name="lookup", input_schema={"type": "object"})
    assert count() == one


@pytest.mark.parametrize("body", [{}, {"timeout": 5}])
def test_a_change_whose_etag_passed_just_before_another_admins_saves_nothing(
    clients, team, admin_member, team_tool_server, monkeypatch, body
):
    """The owner's If-Match passes; the admin turns a tool's ask-first on before the owner's
    change is saved. The tool choices are checked again as they are saved: 412, and the
    admin's choice stands (with or without a change of the server's settings beside them)."""
    url = f"{base(team)}{team_tool_server.pk}/"
    tag = clients["owner"].get(url)["ETag"]
    check, changed = actions.check_tool_names, []

    def checked_then_changed(server, names):
        check(server, names)
        if not changed:  # once: the admin's own save checks names too
            changed.append(True)
            actions.set_tool_choices(admin_member, server, {"get_weather": {"ask_first": True}})

    monkeypatch.setattr(actions, "check_tool_names", checked_then_changed)
    change = {**body, "tools": {"get_weather": {"enabled": False, "ask_first": False}}}
    stale = clients["owner"].patch(
        url, json.dumps(change), content_type="application/json", headers={"If-Match": tag}
    )
    assert stale.status_code == 412, stale.content
    server = ToolServer.objects.get()
    weather = server.tools.get(name="get_weather")
    assert (server.timeout, weather.enabled, weather.ask_first) == (30, True, True)


def test_a_change_sent_with_an_etag_read_before_another_admins_is_412(
    clients, team, team_tool_server
):
    """The owner and an admin read the server; the admin turns a tool off; the owner's change,
    sent with the ETag read before, saves nothing. Sent with the new ETag, it saves."""
    url = f"{base(team)}{team_tool_server.pk}/"
    tag = clients["owner"].get(url)["ETag"]
    assert tag.startswith('"')
    turned_off = send(
        clients["admin"], "patch", url, {"tools": {"get_weather": {"enabled": False}}}
    )
    assert turned_off.status_code == 200 and turned_off["ETag"] != tag
    for body in ({"timeout": 5}, {"tools": {"get_weather": {"enabled": True}}}):
        stale = clients["owner"].patch(
            url, json.dumps(body), content_type="application/json", headers={"If-Match": tag}
        )
        assert stale.status_code == 412, stale.content
        assert stale.json()["error"]["code"] == "precondition_failed"
    assert clients["owner"].delete(url, headers={"If-Match": tag}).status_code == 412
    server = ToolServer.objects.get()
    assert server.timeout == 30 and not server.tools.get(name="get_weather").enabled
    fresh = clients["owner"].patch(
        url,
        json.dumps({"timeout": 5}),
        content_type="application/json",
        headers={"If-Match": turned_off["ETag"]},
    )
    assert fresh.status_code == 200 and fresh.json()["timeout"] == 5
    assert clients["owner"].get(url)["ETag"] == fresh["ETag"]


def test_a_refresh_with_a_token_no_key_reads_is_400_token_unreadable(clients, team, mcp_server):
    """The site's secret changed since the token was stored: the refresh says to enter the
    token again, as protocol.md has it, rather than failing or connecting without it."""
    server = ToolServer.objects.create(
        team=team, name="old", url=mcp_server.url, token_encrypted="gAAAAA-not-readable"
    )
    refreshed = send(clients["owner"], "post", f"{base(team)}{server.pk}/refresh/")
    assert refreshed.status_code == 400
    assert refreshed.json()["error"]["code"] == "token_unreadable"
    assert refreshed.json()["error"]["field"] == "token"
    entered = send(clients["owner"], "patch", f"{base(team)}{server.pk}/", {"token": ""})
    assert entered.status_code == 200, entered.content
    assert send(clients["owner"], "post", f"{base(team)}{server.pk}/refresh/").status_code == 200
