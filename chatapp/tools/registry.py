"""What the chat's tool loop uses: a team's available tools, and calling one.

tools_for_team reads the cached lists (no network): the enabled tools of the team's servers
that were up at their last refresh. call_tool connects to the tool's server through the network
guard and never raises for a failure of the tool, the network, the protocol or the timeout:
the failure comes back as a result with is_error set. Cancellation propagates.
"""

import json
import re
import time
from collections import Counter
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import connection
from mcp.types import CallToolResult, EmbeddedResource, TextContent, TextResourceContents

from chatapp.teams import crypto
from chatapp.tools import mcp_client
from chatapp.tools.models import (
    MAX_OFFERED_TOOLS,
    ServerStatus,
    Tool,
    ToolServer,
    too_long_to_offer,
)

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True)
class AvailableTool:
    server_id: int
    tool_id: int
    name: str  # as the model sees it; matches NAME_PATTERN
    description: str
    input_schema: dict
    needs_approval: bool
    timeout: float

    def spec(self) -> dict:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.input_schema,
            },
        }


@dataclass(frozen=True)
class ToolResult:
    content: str
    is_error: bool
    elapsed: float  # seconds


def model_name(name: str) -> str:
    """A name the model APIs accept: ^[a-zA-Z0-9_-]{1,64}$."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64] or "tool"


def _available(tools: list[Tool]) -> list[AvailableTool]:
    clashes = Counter(model_name(tool.name) for tool in tools)
    taken: set[str] = set()
    available = []
    for tool in tools:
        name = model_name(tool.name)
        if clashes[name] > 1:  # two servers offer it: say whose
            name = model_name(f"{tool.server.name}__{tool.name}")
        if name in taken:  # still the same after sanitising: the id tells them apart
            name = model_name(f"{name[:50]}_{tool.pk}")
        taken.add(name)
        available.append(
            AvailableTool(
                server_id=tool.server_id,
                tool_id=tool.pk,
                name=name,
                description=tool.description,
                input_schema=tool.input_schema or {"type": "object", "properties": {}},
                needs_approval=tool.needs_approval,
                timeout=float(tool.server.timeout),
            )
        )
    return available


def available_tools(team_id: int) -> list[AvailableTool]:
    """The team's enabled tools on its servers that are up, the first MAX_OFFERED_TOOLS.
    Every answer's start asks, and most teams have no tool server: for them this is one short
    plain statement (the ORM's version cost several times as much to build as to run), not
    the join."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {ToolServer._meta.db_table} WHERE team_id = %s AND status = %s",
            [team_id, ServerStatus.UP.value],
        )
        server_ids = [row[0] for row in cursor.fetchall()]
    if not server_ids:
        return []
    tools = (
        Tool.objects.filter(server_id__in=server_ids, enabled=True)
        .select_related("server")
        .order_by("server__name", "server_id", "name", "id")
    )
    offered: list[Tool] = []
    start = 0
    while True:
        batch = list(tools[start : start + MAX_OFFERED_TOOLS])
        # A tool listed before the size limits existed stays until its server is refreshed:
        # it is not offered meanwhile, and the next in order takes its place.
        offered += [t for t in batch if not too_long_to_offer(t.description, t.input_schema)]
        start += MAX_OFFERED_TOOLS
        if len(offered) >= MAX_OFFERED_TOOLS or len(batch) < MAX_OFFERED_TOOLS:
            return _available(offered[:MAX_OFFERED_TOOLS])


def _server_of(tool: AvailableTool) -> tuple[str, str, str] | None:
    """(url, token, the tool's own name) for a tool still enabled on its server, else None."""
    found = (
        Tool.objects.filter(pk=tool.tool_id, server_id=tool.server_id, enabled=True)
        .select_related("server")
        .first()
    )
    if found is None:
        return None
    server = found.server
    token = crypto.decrypt(server.token_encrypted) if server.token_encrypted else ""
    return server.url, token, found.name


def _needs_approval_now(tool: AvailableTool) -> bool:
    found = Tool.objects.filter(pk=tool.tool_id, server_id=tool.server_id).first()
    return tool.needs_approval if found is None else found.needs_approval


async def needs_approval(tool: AvailableTool) -> bool:
    """Whether a call of the tool waits for the user, as its server and the team's admins say
    now: "ask first" set, or a refresh finding it changes things, since the list was read
    holds the answer's next call of it."""
    return await sync_to_async(_needs_approval_now)(tool)


async def call_tool(
    tool: AvailableTool, arguments: dict, timeout: float | None = None
) -> ToolResult:
    """The call, connecting included, within timeout seconds (the tool's own by default)."""
    started = time.monotonic()

    def done(content: str, is_error: bool) -> ToolResult:
        return ToolResult(content, is_error, time.monotonic() - started)

    try:
        target = await sync_to_async(_server_of)(tool)
    except crypto.KeyUnreadable:
        return done(
            "The tool server's token can no longer be read: an admin must enter it again.", True
        )
    if target is None:
        return done(f"The tool {tool.name} is no longer available.", True)
    url, token, name = target
    try:
        limit = tool.timeout if timeout is None else timeout
        result, left_out = await mcp_client.call(url, token, name, arguments, limit)
    except mcp_client.ToolServerError as exc:
        return done(exc.message, True)
    text = result_text(result, left_out)
    return done(mcp_client.without_token(text, token), result.is_error)


def result_text(result: CallToolResult, left_out: list[str] | None = None) -> str:
    """The text parts joined; structured content as JSON text when there is no text part;
    a note for each block left out (`left_out`: those the protocol does not allow)."""
    parts = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, EmbeddedResource) and isinstance(
            block.resource, TextResourceContents
        ):
            parts.append(block.resource.text)
        else:
            parts.append(f"[{block.type} content left out]")
    if not any(isinstance(block, TextContent) for block in result.content):
        if result.structured_content is not None:
            parts.insert(0, json.dumps(result.structured_content, ensure_ascii=False))
    parts.extend(f"[{kind[:40]} content left out]" for kind in left_out or ())
    return "\n".join(parts)
