"""Talking to one MCP tool server over Streamable HTTP with the official SDK.

Each use opens its own connection (through the network guard), initialises a session, does
its one thing and closes; failures become ToolServerError with a message a team admin can act
on, never a stack trace or the token. Cancellation is not a failure: it propagates.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import (
    CallToolRequest,
    CallToolRequestParams,
    CallToolResult,
    PaginatedRequestParams,
    Tool,
)

from chatapp.tools.network import (
    MAX_MESSAGE_BYTES,
    MessageTooLarge,
    ToolServerRefused,
    Trouble,
    guarded_client,
)

log = logging.getLogger(__name__)

MAX_TOOLS = 200  # per server: a longer list is cut (and said so in the server's status)
MAX_PAGES = 20
CLOSE_SECONDS = 2.0  # for ending a session once the server has answered


class ToolServerError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ListedTool:
    name: str
    description: str
    input_schema: dict
    read_only: bool


def is_read_only(tool: Tool) -> bool:
    hints = tool.annotations
    return bool(hints and hints.read_only_hint is True and hints.destructive_hint is not True)


async def list_tools(url: str, token: str, timeout: float) -> tuple[list[ListedTool], bool]:
    """The server's tools, at most MAX_TOOLS, and whether it listed more."""
    listed: list[ListedTool] = []
    async with _session(url, token, timeout) as session:
        cursor = None
        for _ in range(MAX_PAGES):
            params = PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            listed.extend(
                ListedTool(
                    name=tool.name,
                    description=tool.description or "",
                    input_schema=tool.input_schema or {"type": "object", "properties": {}},
                    read_only=is_read_only(tool),
                )
                for tool in page.tools
            )
            cursor = page.next_cursor
            if not cursor or len(listed) > MAX_TOOLS:
                break
    return listed[:MAX_TOOLS], len(listed) > MAX_TOOLS or bool(cursor)


async def call(url: str, token: str, name: str, arguments: dict, timeout: float) -> CallToolResult:
    """The tool's result as the server sent it. The SDK's call_tool would then check it
    against the tool's outputSchema, listing the tools again to find it, and turn a result
    that does not match into an error: the model would be told a tool failed that had run."""
    request = CallToolRequest(params=CallToolRequestParams(name=name, arguments=arguments))
    async with _session(url, token, timeout) as session:
        return await session.send_request(request, CallToolResult)


@asynccontextmanager
async def _session(url: str, token: str, timeout: float) -> AsyncIterator[ClientSession]:
    """An initialised session; the whole use (connect, initialise, work) within timeout."""
    trouble = Trouble()
    done = False
    try:
        with anyio.fail_after(timeout) as scope:
            async with (
                guarded_client(token, timeout, trouble) as http,
                streamable_http_client(
                    url, http_client=http, max_sse_event_size=MAX_MESSAGE_BYTES
                ) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                yield session
                # Answered: ending the session (a DELETE) may take a moment, not the rest.
                done = True
                scope.deadline = min(scope.deadline, anyio.current_time() + CLOSE_SECONDS)
    except TimeoutError:
        if done:
            return  # the server never said the session ended; what it answered stands
        raise ToolServerError(
            f"The tool server did not answer within {timeout:g} seconds."
        ) from None
    except ToolServerError:
        raise
    except Exception as exc:  # the SDK's errors, often wrapped in exception groups
        raise ToolServerError(_describe(url, token, exc, trouble)) from None


def without_token(text: str, token: str) -> str:
    """The server's words as members, the model and the audit trail see them: a server that
    quotes the token back (an error naming the session it refused, a tool saying who called)
    does not show it. Before any cut, so no piece of it is left either."""
    return text.replace(token, "[redacted]") if token else text


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(url: str, token: str, exc: Exception, trouble: Trouble) -> str:
    host = urlsplit(url).hostname or url
    cause = _first_leaf(trouble.error or exc)
    if isinstance(cause, ToolServerRefused):
        return str(cause)
    if isinstance(cause, MessageTooLarge):
        return f"The tool server at {host} {cause}"
    if trouble.status in (401, 403):
        return (
            f"The tool server at {host} refused the request (HTTP {trouble.status}):"
            " check the server's token."
        )
    if trouble.status is not None and trouble.status != 404:
        return f"The tool server at {host} answered with HTTP {trouble.status}."
    if isinstance(cause, httpx2.TimeoutException):
        return f"The tool server at {host} did not answer in time."
    if isinstance(cause, httpx2.TransportError):
        return (
            f"Could not connect to the tool server at {host}:"
            " check the URL and that the server is running."
        )
    if isinstance(cause, MCPError):
        said = without_token(cause.error.message, token)[:200]
        return f"The tool server at {host} answered with an error: {said}"
    log.warning("Tool server %s failed: %s", host, type(cause).__name__)
    return f"The tool server at {host} did not answer as an MCP server: check the URL."
