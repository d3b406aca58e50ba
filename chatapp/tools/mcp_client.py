"""Talking to one MCP tool server over Streamable HTTP with the official SDK.

Each use opens its own connection (through the network guard), initialises a session, does
its one thing and closes; failures become ToolServerError with a message a team admin can act
on, never a stack trace or the token. Cancellation is not a failure: it propagates.
"""

import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage
from mcp.types import (
    CONNECTION_CLOSED,
    CallToolRequest,
    CallToolRequestParams,
    CallToolResult,
    JSONRPCResponse,
    PaginatedRequestParams,
    Tool,
)
from mcp_types.methods import validate_server_result
from pydantic import ValidationError

from chatapp.tools.network import (
    MAX_MESSAGE_BYTES,
    MessageTooLarge,
    ToolServerRefused,
    Trouble,
    guarded_client,
)

log = logging.getLogger(__name__)


def seconds_text(seconds: float) -> str:
    """A time limit as people read it: "30", "2.5", "0.5", never "0.4998236"."""
    return f"{max(round(seconds, 1 if seconds < 10 else 0), 0.1):g}"


MAX_TOOLS = 200  # per server: a longer list is cut (and said so in the server's status)
MAX_PAGES = 20
CLOSE_SECONDS = 2.0  # for ending a session once the server has answered
# Of a token: a shorter one hidden wherever it stands would hide those letters in every result.
MIN_TOKEN_CHARS = 8


UNSENDABLE_TOKEN = (
    "The tool server's saved token cannot be sent in an HTTP header (it holds characters other"
    " than printable ASCII): an admin must enter it again."
)


def sendable_in_header(token: str) -> bool:
    """What an Authorization header can carry; a token saved before tokens were checked for it
    may hold more."""
    return token.isascii() and token.isprintable()


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


@dataclass(frozen=True)
class ToolList:
    tools: list[ListedTool]  # at most MAX_TOOLS
    more: bool  # the server listed more
    refused: list[str]  # the names of the tools listed in a form MCP does not allow


async def list_tools(url: str, token: str, timeout: float) -> ToolList:
    """The server's tools, at most MAX_TOOLS; whether it listed more, and which it listed in a
    form MCP does not allow (left out)."""
    listed: list[ListedTool] = []
    refused: list[str] = []
    async with _session(url, token, timeout, refused) as session:
        cursor = None
        for _ in range(MAX_PAGES):
            params = PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            listed.extend(
                ListedTool(
                    name=tool.name,
                    # Members and the model read them: a server quoting the token back there
                    # does not show it, as in its errors and results.
                    description=without_token(tool.description or "", token),
                    input_schema=each_text(
                        tool.input_schema or {"type": "object", "properties": {}},
                        lambda text: without_token(text, token),
                    ),
                    read_only=is_read_only(tool),
                )
                for tool in page.tools
            )
            cursor = page.next_cursor
            if not cursor or len(listed) > MAX_TOOLS:
                break
    return ToolList(listed[:MAX_TOOLS], len(listed) > MAX_TOOLS or bool(cursor), refused)


async def call(
    url: str, token: str, name: str, arguments: dict, timeout: float
) -> tuple[CallToolResult, list[str]]:
    """The tool's result as the server sent it, and the types of its content blocks that the
    protocol does not allow (left out); a result it does not allow as a whole is a
    ToolServerError that says the server answered. The SDK's call_tool would then check it
    against the tool's outputSchema, listing the tools again to find it, and turn a result that
    does not match into an error: the model would be told a tool failed that had run."""
    request = CallToolRequest(params=CallToolRequestParams(name=name, arguments=arguments))
    left_out: list[str] = []
    result = None
    async with _session(url, token, timeout, left_out) as session:
        with suppress(ValidationError):  # the server answered: not a failure to reach it
            result = await session.send_request(request, CallToolResult)
    if result is None:
        raise ToolServerError(
            f"The tool server at {urlsplit(url).hostname or url} answered, but its result is in"
            " a form MCP does not allow, so it was left out: the tool may have run all the same."
        )
    return result, left_out


class _PartsChecked:
    """The stream a session reads, holding back each part of an answer that the protocol does
    not allow, where the SDK would refuse the whole answer for one: a tool of a tools/list
    answer (an input schema that is no object schema, a description that is no text), and
    all the server's tools would be lost; a content block of a tools/call result (of a type
    the protocol has no room for, a text block without its text), and a call that ran would
    seem to have failed; so is a result's structured content that is no object. What is held
    back goes to `left_out`: the tools' names, the blocks' types ("structured" for the
    structured content). A tool whose name an earlier one of the list had (on any of its
    pages) is dropped before it is checked: a name's first listing decides whether it is
    offered or left out, never a later one of another form."""

    def __init__(self, stream: Any, left_out: list[str] | None):
        self._stream = stream
        self._left_out = [] if left_out is None else left_out
        self._tool_names: set[str] = set()  # of the tools listed so far, allowed or not
        self.version = ""  # the protocol version negotiated, once it is

    async def receive(self) -> Any:
        item = await self._stream.receive()
        if isinstance(item, SessionMessage) and isinstance(item.message, JSONRPCResponse):
            self._check(item.message.result)
        return item

    def _check(self, result: dict[str, Any]) -> None:
        if not self.version:
            return
        if isinstance(result.get("tools"), list):
            tools = [tool for tool in result["tools"] if self._first_of_its_name(tool)]
            result["tools"] = self._allowed(tools, "tools/list", "tools", "name")
        elif isinstance(result.get("content"), list):
            result["content"] = self._allowed(result["content"], "tools/call", "content", "type")
            if "structuredContent" in result and not self._fits(
                "tools/call", {"content": [], "structuredContent": result["structuredContent"]}
            ):
                del result["structuredContent"]
                self._left_out.append("structured")
        # Anything else the SDK judges whole.

    def _first_of_its_name(self, tool: Any) -> bool:
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str):
            return True  # no name to share: its form is checked (and refused) as it is
        if name in self._tool_names:
            return False
        self._tool_names.add(name)
        return True

    def _allowed(self, parts: list[Any], method: str, key: str, label: str) -> list[Any]:
        kept = []
        for part in parts:
            if not self._fits(method, {key: [part]}):
                said = part.get(label) if isinstance(part, dict) else None
                self._left_out.append(said if isinstance(said, str) else str(said))
                continue
            kept.append(part)
        return kept

    def _fits(self, method: str, result: dict[str, Any]) -> bool:
        try:
            validate_server_result(method, self.version, result)
        except (ValidationError, ValueError, KeyError):
            return False
        return True

    def __getattr__(self, name: str) -> Any:  # last_context, as the stream has it
        return getattr(self._stream, name)

    def __aiter__(self) -> "_PartsChecked":
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> "_PartsChecked":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@asynccontextmanager
async def _session(
    url: str, token: str, timeout: float, left_out: list[str] | None = None
) -> AsyncIterator[ClientSession]:
    """An initialised session; the whole use (connect, initialise, work) within timeout.
    `left_out` collects what the protocol does not allow of an answer (see _PartsChecked)."""
    if not sendable_in_header(token):
        raise ToolServerError(UNSENDABLE_TOKEN)
    trouble = Trouble()
    done = False
    try:
        with anyio.fail_after(timeout) as scope:
            async with (
                guarded_client(token, timeout, trouble) as http,
                streamable_http_client(
                    url, http_client=http, max_sse_event_size=MAX_MESSAGE_BYTES
                ) as (read, write),
                ClientSession(checked := _PartsChecked(read, left_out), write) as session,
            ):
                await session.initialize()
                checked.version = session.protocol_version or ""
                yield session
                # Answered: ending the session (a DELETE) may take a moment, not the rest.
                done = True
                scope.deadline = min(scope.deadline, anyio.current_time() + CLOSE_SECONDS)
    except TimeoutError:
        if done:
            return  # the server never said the session ended; what it answered stands
        raise ToolServerError(
            f"The tool server did not answer within {seconds_text(timeout)} seconds."
        ) from None
    except ToolServerError:
        raise
    except Exception as exc:  # the SDK's errors, often wrapped in exception groups
        raise ToolServerError(_describe(url, token, exc, trouble)) from None


def without_token(text: str, token: str) -> str:
    """The server's words as members, the model and the audit trail see them: a server that
    quotes the token back (an error naming the session it refused, a tool saying who called)
    does not show it. Before any cut, so no piece of it is left either. A token shorter than
    MIN_TOKEN_CHARS (stored before there was one) only where it stands alone, not inside the
    words and numbers of every result. Also as JSON text writes it (structured content, a
    tool's JSON), its quotes and backslashes escaped."""
    if len(token) >= MIN_TOKEN_CHARS:
        escaped = json.dumps(token, ensure_ascii=False)[1:-1]
        return text.replace(token, "[redacted]").replace(escaped, "[redacted]")
    if token:
        return re.sub(rf"(?<!\w){re.escape(token)}(?!\w)", "[redacted]", text)
    return text


def each_text(value: Any, change: Callable[[str], str]) -> Any:
    """A JSON value (a listed schema) with every text in it, keys too, through `change`."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [each_text(item, change) for item in value]
    if isinstance(value, dict):
        return {each_text(key, change): each_text(item, change) for key, item in value.items()}
    return value


# The SDK's words for a request whose event stream ended with no answer in it, at once or
# after its attempts to resume the stream (refused: the server is gone) ran out.
UNANSWERED = ("SSE stream ended without a response", "SSE stream ended and reconnection")


def _stream_ended_unanswered(cause: BaseException) -> bool:
    """The SDK's own error for a call whose event stream ended with no answer in it: a server
    that crashed or was cut off mid-call. Its code, CONNECTION_CLOSED, is also JSON-RPC's
    generic server error, which servers send with words of their own; a stream that broke
    (an event over the size limit...) has its reason, said as the server's error."""
    return (
        isinstance(cause, MCPError)
        and cause.error.code == CONNECTION_CLOSED
        and cause.error.message.startswith(UNANSWERED)
    )


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind a connect error (httpx2 wraps httpcore2's, which wraps ssl's)."""
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        if isinstance(cause, ssl.SSLError):
            return cause
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return None


def _describe(url: str, token: str, exc: Exception, trouble: Trouble) -> str:
    host = urlsplit(url).hostname or url
    cause = _first_leaf(trouble.error or exc)
    if isinstance(cause, ToolServerRefused):
        return str(cause)
    if isinstance(cause, MessageTooLarge):
        return f"The tool server at {host} {cause}"
    if _stream_ended_unanswered(_first_leaf(exc)):
        # Before what failed later: the SDK's attempts to resume the stream (refused, or
        # answered with an error status by a server that lost the session).
        return (
            f"The tool server at {host} closed the connection before answering: the tool may"
            " or may not have run."
        )
    if trouble.status in (401, 403):
        return (
            f"The tool server at {host} refused the request (HTTP {trouble.status}):"
            " check the server's token."
        )
    if trouble.status is not None and trouble.status != 404:
        if trouble.explained and isinstance(cause, MCPError):  # its reason, such as bad arguments
            said = without_token(cause.error.message, token)[:200]
            return f"The tool server at {host} answered with HTTP {trouble.status}: {said}"
        return f"The tool server at {host} answered with HTTP {trouble.status}."
    if isinstance(cause, httpx2.TimeoutException):
        return f"The tool server at {host} did not answer in time."
    if isinstance(cause, httpx2.ConnectError) and (tls := _tls_error(cause)):
        if isinstance(tls, ssl.SSLCertVerificationError):
            reason = str(tls.verify_message).rstrip(".")
            return (
                f"The tool server at {host} failed the TLS certificate check ({reason}): its"
                " certificate must be valid for the URL's host name and signed by a public"
                " certificate authority."
            )
        return (
            f"The TLS connection to the tool server at {host} failed: check that the URL's"
            " port serves https."
        )
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
