"""Every change to a team's tool servers goes through here, audited (never with the token).

Connecting to a server (to list its tools) is async network work; the database writes run
through sync_to_async. Callers check that the actor manages the team (chatapp.teams.services).
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chatapp.core.text import storable
from chatapp.core.words import counted
from chatapp.teams import crypto
from chatapp.teams.actions import LimitReached, audit, check_room
from chatapp.teams.json_schemas import parameters_problem
from chatapp.teams.models import AuditAction, Team
from chatapp.teams.network import blocked_address, private_allowed, resolve
from chatapp.tools import mcp_client
from chatapp.tools.models import (
    MAX_TIMEOUT,
    MIN_TIMEOUT,
    ServerStatus,
    Tool,
    ToolServer,
    too_long_to_offer,
)
from chatapp.tools.network import refusal

MAX_TOOL_NAME = 128  # Tool.name's max_length
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}$")


class ToolActionError(Exception):
    """A change refused; message says why and what to do, field which input it is about."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Listing:
    tools: list[mcp_client.ListedTool]
    error: str  # empty when the server answered
    note: str = ""  # what the admins should know of an answer: a list cut short
    refused: tuple[str, ...] = ()  # tools listed in a form MCP does not allow, left out


def _who(user) -> str:
    return user.get_username() if user is not None else "a deleted user"


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME_PATTERN.match(name):
        raise ToolActionError(
            "invalid",
            "Name the server with 1 to 40 letters, digits, spaces, dots, dashes or underscores.",
            "name",
        )
    return name


def check_timeout(timeout: int) -> int:
    if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        raise ToolActionError(
            "invalid", f"The timeout must be {MIN_TIMEOUT} to {MAX_TIMEOUT} seconds.", "timeout"
        )
    return timeout


def check_token(token: str) -> str:
    """A token to store: empty (none), or long enough to be hidden wherever a server quotes
    it back (mcp_client.without_token), and what an HTTP header holds: printable ASCII."""
    if token and (not mcp_client.sendable_in_header(token) or " " in token):
        raise ToolActionError(
            "invalid",
            "The token can hold only ASCII letters, digits and punctuation, without spaces:"
            " enter it exactly as the server expects it.",
            "token",
        )
    if token and len(token) < mcp_client.MIN_TOKEN_CHARS:
        raise ToolActionError(
            "invalid",
            f"The token must be at least {mcp_client.MIN_TOKEN_CHARS} characters long:"
            " enter the one the server expects.",
            "token",
        )
    return token


def url_form_problem(url: str) -> str | None:
    """Why the URL's form is refused (before any lookup), or None."""
    if not url or any(not c.isprintable() or c.isspace() for c in url):
        return "Enter the server's URL, without spaces."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "The URL is not valid: check the host and port."
    schemes = ("https", "http") if private_allowed() else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        return "Enter an https:// URL, such as https://tools.example.com/mcp."
    if parts.username is not None or parts.password is not None:
        return "Enter the URL without a user name or password: put a token in the token field."
    if parts.query or parts.fragment:
        return "Enter the URL without a query or fragment: put a token in the token field."
    if port == 0:
        return "The port in this URL is not valid."
    return None


def check_url(url: str) -> str:
    """The URL, or ToolActionError: its form, then where its host resolves (blocking)."""
    url = url.strip()
    if problem := url_form_problem(url):
        raise ToolActionError("invalid", problem, "url")
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        raise ToolActionError(
            "invalid", f"The host {host} could not be resolved: check the address.", "url"
        ) from None
    if blocked_address(host, addresses):
        raise ToolActionError("url_refused", refusal(host), "url")
    return url


def _check_name_free(team_id: int, name: str, server_id: int = 0) -> None:
    """Before any lookup or connection; the unique constraint still settles a race."""
    taken = ToolServer.objects.filter(team_id=team_id, name=name).exclude(pk=server_id)
    if taken.exists():
        raise ToolActionError("name_taken", f"The team already has a server named {name}.", "name")


async def fetch_listing(url: str, token: str, timeout: float) -> Listing:
    try:
        listed = await mcp_client.list_tools(url, token, timeout)
    except mcp_client.ToolServerError as exc:
        return Listing([], exc.message)
    note = ""
    if listed.more:
        note = (
            f"The server lists more than {mcp_client.MAX_TOOLS} tools: only the first"
            f" {mcp_client.MAX_TOOLS} are offered."
        )
    return Listing(listed.tools, "", note, tuple(listed.refused))


def store_listing(server: ToolServer, listing: Listing) -> None:
    """Save a refresh's outcome; the admins' choices (enabled, ask first) stay as they were."""
    server.refreshed_at = timezone.now()
    if listing.error:
        server.status, server.last_error = ServerStatus.DOWN, storable(listing.error)[:500]
        server.save(update_fields=["status", "last_error", "refreshed_at"])
        return  # the last known list stays, for the page; a down server offers nothing
    server.status, server.last_error = ServerStatus.UP, listing.note
    server.save(update_fields=["status", "last_error", "refreshed_at"])
    known = {tool.name: tool for tool in server.tools.all()}
    added: list[Tool] = []
    kept: list[Tool] = []
    seen: set[str] = set()
    unusable: list[str] = []
    oversized: list[str] = []
    for listed in listing.tools:
        if (
            listed.name in seen
            or len(listed.name) > MAX_TOOL_NAME
            or storable(listed.name) != listed.name
        ):
            continue  # a server's list with a name twice, or one that cannot be a name
        seen.add(listed.name)
        schema = mcp_client.each_text(listed.input_schema, storable)
        if parameters_problem(schema):
            # NaN or a broken schema: no database stores it, no model API takes it.
            unusable.append(listed.name)
            continue
        description = storable(listed.description)
        if too_long_to_offer(description, schema):
            oversized.append(listed.name)  # every chat request would carry it
            continue
        tool = known.pop(listed.name, None)
        if tool is None:
            tool = Tool(server=server, name=listed.name)
            added.append(tool)
        else:
            kept.append(tool)
        tool.description = description
        tool.input_schema = schema
        tool.read_only = listed.read_only
    # The same few statements for a list of any length (up to mcp_client.MAX_TOOLS).
    Tool.objects.bulk_create(added)
    Tool.objects.bulk_update(kept, ["description", "input_schema", "read_only"])
    Tool.objects.filter(pk__in=[tool.pk for tool in known.values()]).delete()
    left_out = []
    if listing.refused:
        names = sorted({storable(name)[:MAX_TOOL_NAME] for name in listing.refused})
        left_out.append(
            f"Left out {counted(len(names), 'tool')} the server describes in a form MCP does not"
            f" allow (a name, description or input schema of the wrong type): {', '.join(names)}."
        )
    if unusable:
        left_out.append(
            f"Left out {counted(len(unusable), 'tool')} whose input schema is not a valid"
            f" JSON Schema: {', '.join(sorted(unusable))}."
        )
    if oversized:
        left_out.append(
            f"Left out {counted(len(oversized), 'tool')} whose description or input schema is"
            f" too long to offer to the model: {', '.join(sorted(oversized))}."
        )
    if left_out:
        server.last_error = storable(" ".join([listing.note, *left_out]).strip())[:500]
        server.save(update_fields=["last_error"])


async def add_server(
    actor, team: Team, *, name: str, url: str, token: str = "", timeout: int
) -> ToolServer:
    """Check, connect and store a server; one that cannot be reached is stored as down."""
    name, timeout, token = check_name(name), check_timeout(timeout), check_token(token)
    await sync_to_async(_check_room)(team)  # before connecting; checked again when stored
    await sync_to_async(_check_name_free)(team.pk, name)
    url = await sync_to_async(check_url, thread_sensitive=False)(url)
    listing = await fetch_listing(url, token, timeout)
    return await sync_to_async(_create)(actor, team, name, url, token, timeout, listing)


def _check_room(team: Team) -> None:
    servers, limit = ToolServer.objects.filter(team=team), settings.TEAM_MAX_TOOL_SERVERS
    try:
        with transaction.atomic():
            check_room(team, servers, limit, "too_many_tool_servers", "tool servers")
    except LimitReached as error:
        raise ToolActionError(error.code, error.message) from None


def _create(actor, team, name, url, token, timeout, listing: Listing) -> ToolServer:
    try:
        with transaction.atomic():
            _check_room(team)  # inside: the team's row stays held until the server is stored
            server = ToolServer.objects.create(
                team=team,
                name=name,
                url=url,
                token_encrypted=crypto.encrypt(token) if token else "",
                timeout=timeout,
                created_by=actor,
            )
            store_listing(server, listing)
            audit(
                team,
                actor,
                AuditAction.TOOL_SERVER_ADD,
                f"{_who(actor)} added the tool server {name} ({url})",
                server=name,
                url=url,
                has_token=bool(token),
                status=server.status,
                tools=[tool.name for tool in server.tools.all()],
            )
    except IntegrityError:
        raise ToolActionError(
            "name_taken", f"The team already has a server named {name}.", "name"
        ) from None
    return server


async def refresh_server(actor, server: ToolServer) -> ToolServer:
    token = await sync_to_async(_token)(server)
    listing = await fetch_listing(server.url, token, server.timeout)
    await sync_to_async(_refresh)(actor, server, listing)
    return server


def _token(server: ToolServer) -> str:
    if not server.token_encrypted:
        return ""
    try:
        return crypto.decrypt(server.token_encrypted)
    except crypto.KeyUnreadable:
        raise ToolActionError(
            "token_unreadable",
            "The server's token can no longer be read (the site's secret changed): enter it again.",
            "token",
        ) from None


def _hold(server: ToolServer) -> ToolServer:
    """Hold the server's row until the transaction ends and return it as stored now; it may
    have gone, or changed, while we connected."""
    held = ToolServer.objects.select_for_update().filter(pk=server.pk).first()
    if held is None:
        raise ToolActionError("not_found", f"The tool server {server.name} has been removed.")
    return held


def _refresh(actor, server: ToolServer, listing: Listing) -> None:
    with transaction.atomic():
        held = _hold(server)
        if (held.url, held.token_encrypted) != (server.url, server.token_encrypted):
            # The list came from the old address or token; the change listed the new one.
            raise ToolActionError(
                "changed",
                f"The URL or token of {server.name} changed while it was refreshed:"
                " reload the page and refresh it again.",
            )
        store_listing(server, listing)
        audit(
            server.team,
            actor,
            AuditAction.TOOL_SERVER_REFRESH,
            f"{_who(actor)} refreshed the tools of {server.name}: {server.status}",
            server=server.name,
            status=server.status,
            error=server.last_error,
            tools=[tool.name for tool in server.tools.all()],
        )


async def change_server(
    actor,
    server: ToolServer,
    *,
    name: str | None = None,
    url: str | None = None,
    token: str | None = None,
    timeout: int | None = None,
    seen: str = "",
    etag: str = "",
    choices: dict[str, dict[str, bool]] | None = None,
) -> ToolServer:
    """Change the server's settings; a new URL or token connects again to list the tools.

    token: None keeps the stored one, "" removes it. A new URL needs the token entered again
    (or removed), so a stored token never goes to a server it was not entered for.
    seen: the server's state() as the edit form read it, or etag: its etag_state() as the API
    read it; changed since, nothing is saved. choices: as set_tool_choices takes them, saved
    with the settings, for the tools still listed once they are."""
    _check_seen(server, seen)  # before connecting anywhere (the API checked its If-Match)
    new_name = check_name(name) if name is not None else server.name
    new_timeout = check_timeout(timeout) if timeout is not None else server.timeout
    if token is not None:
        check_token(token)
    if new_name != server.name:
        await sync_to_async(_check_name_free)(server.team_id, new_name, server.pk)
    new_url = server.url
    if url is not None and url.strip() != server.url:
        new_url = await sync_to_async(check_url, thread_sensitive=False)(url)
        if token is None and server.has_token:
            raise ToolActionError(
                "token_required",
                "Enter the token again (or an empty one) when you change the server's URL.",
                "token",
            )
    listing = None
    if new_url != server.url or token is not None:
        plain = token if token is not None else await sync_to_async(_token)(server)
        listing = await fetch_listing(new_url, plain, new_timeout)
    return await sync_to_async(_change)(
        actor, server, new_name, new_url, token, new_timeout, listing, seen, etag, choices or {}
    )


def _check_seen(server: ToolServer, seen: str, etag: str = "") -> None:
    if seen and server.state() != seen:
        raise ToolActionError(
            "changed",
            f"The tool server {server.name} was changed meanwhile, by someone else (its name,"
            " URL, timeout or token): nothing was saved. Check the fields, then save again.",
        )
    if etag and server.etag_state() != etag:
        raise ToolActionError(
            "changed",
            f"The tool server {server.name} or its tools' choices were changed meanwhile, by"
            " someone else: nothing was saved. Read it again, then send your change again.",
        )


def _change(
    actor, server, name, url, token, timeout, listing: Listing | None, seen, etag, choices
) -> ToolServer:
    changes: dict[str, object] = {}
    for field, value in (("name", name), ("url", url), ("timeout", timeout)):
        if getattr(server, field) != value:
            changes[field] = [getattr(server, field), value]
            setattr(server, field, value)
    if token is not None:
        server.token_encrypted = crypto.encrypt(token) if token else ""
        changes["token"] = "set" if token else "removed"  # never the token itself
    try:
        with transaction.atomic():
            _check_seen(_hold(server), seen, etag)  # changed while the new address was listed
            server.save(update_fields=["name", "url", "timeout", "token_encrypted"])
            if listing is not None:
                store_listing(server, listing)
            if changes:
                audit(
                    server.team,
                    actor,
                    AuditAction.TOOL_SERVER_UPDATE,
                    f"{_who(actor)} changed the tool server {server.name}"
                    f" ({', '.join(sorted(changes))})",
                    server=server.name,
                    **changes,
                )
            # A new URL or token listed the tools again: choices apply to those still listed.
            listed = set(server.tools.values_list("name", flat=True))
            _apply_choices(actor, server, {n: c for n, c in choices.items() if n in listed})
    except IntegrityError:
        raise ToolActionError(
            "name_taken", f"The team already has a server named {name}.", "name"
        ) from None
    return server


def check_tool_names(server: ToolServer, names) -> None:
    unknown = sorted(set(names) - set(server.tools.values_list("name", flat=True)))
    if unknown:
        raise ToolActionError("invalid", f"The server has no tool named {unknown[0]}.", "tools")


def set_tool_choices(
    actor, server: ToolServer, choices: dict[str, dict[str, bool]], etag: str = ""
) -> None:
    """choices: tool name -> {"enabled"?, "ask_first"?}; every name must be the server's.
    etag: the server's etag_state() as the API read it; changed since, nothing is saved."""
    with transaction.atomic():
        # A refresh storing a new list meanwhile finishes first: the tools are read after it.
        _check_seen(_hold(server), "", etag)
        _apply_choices(actor, server, choices)


def _apply_choices(actor, server: ToolServer, choices: dict[str, dict[str, bool]]) -> None:
    """In a transaction holding the server's row."""
    check_tool_names(server, choices)
    tools = {tool.name: tool for tool in server.tools.all()}
    changed = {}
    for name, choice in choices.items():
        tool = tools[name]
        before = (tool.enabled, tool.ask_first)
        tool.enabled = choice.get("enabled", tool.enabled)
        tool.ask_first = choice.get("ask_first", tool.ask_first)
        if (tool.enabled, tool.ask_first) != before:
            changed[name] = {"enabled": tool.enabled, "ask_first": tool.ask_first}
    Tool.objects.bulk_update([tools[name] for name in changed], ["enabled", "ask_first"])
    if changed:
        audit(
            server.team,
            actor,
            AuditAction.TOOL_UPDATE,
            f"{_who(actor)} changed tools of {server.name}: {', '.join(sorted(changed))}"[:300],
            server=server.name,
            tools=changed,
        )


def delete_server(actor, server: ToolServer) -> None:
    with transaction.atomic():
        if not ToolServer.objects.filter(pk=server.pk).delete()[0]:
            return  # removed meanwhile: the trail records that removal, by whoever made it
        audit(
            server.team,
            actor,
            AuditAction.TOOL_SERVER_REMOVE,
            f"{_who(actor)} removed the tool server {server.name}",
            server=server.name,
            url=server.url,
        )
