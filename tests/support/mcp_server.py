"""A real MCP tool server for the tests: the official SDK's MCPServer over Streamable HTTP,
served by uvicorn in a background thread on a loopback port.

Its tools: get_weather(city) (read-only), create_ticket(title) (changes things: needs approval),
slow_lookup(seconds) (sleeps: for timeouts and cancellation) and broken() (raises). It records
the calls it ran, the JSON-RPC methods and the Authorization and Accept-Encoding headers it
received; with `token` set it answers 401 to any request without that bearer token. `stop()`
takes it away (connections are then refused). With `odd_text` it also lists read_dump(path), whose
description and schema hold NUL characters; with `error` it answers every request with a
JSON-RPC error of that message. With `extras` it also lists report(size) (a text of that many
characters), count_tickets(), whose declared output schema its results do not follow, as a
server not built on the SDK may, and whoami(), which quotes the Authorization header back;
`filler` lists that many more tools (tool_1, tool_2, ...).
With `json_response` it answers each request with one JSON body instead of an event stream,
gzipped, whatever the request accepts, with `gzip` too. `tools` (JSON text) is its answer to
tools/list instead of its own tools, `call_result` (JSON text) its answer to every tools/call;
`call_error` answers every tools/call with HTTP 400 and a JSON-RPC error of that message;
with `drop_calls` every tools/call gets an event stream that ends with no answer in it, as a
server that crashed (or was cut off) mid-call leaves it.
With `hang_on_close` it never answers the DELETE that ends a session.
"""

import asyncio
import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field
from starlette.responses import JSONResponse, PlainTextResponse

from .polling import wait_for


@dataclass
class ToolServerRecord:
    calls: list[tuple[str, dict]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    encodings: list[str] = field(default_factory=list)  # the Accept-Encoding of each request
    tickets: list[str] = field(default_factory=list)
    finished_lookups: int = 0


def build_server(
    record: ToolServerRecord, odd_text: bool = False, extras: bool = False, filler: int = 0
) -> MCPServer:
    server = MCPServer("test-tools", log_level="WARNING")

    if extras:

        @server.tool(annotations=ToolAnnotations(read_only_hint=True))
        def report(size: int) -> str:
            """A report of `size` characters."""
            record.calls.append(("report", {"size": size}))
            return "r" * size

        @server.tool(annotations=ToolAnnotations(read_only_hint=True))
        def count_tickets() -> str:
            """How many tickets are open."""
            record.calls.append(("count_tickets", {}))
            return "3 tickets are open"

        @server.tool(annotations=ToolAnnotations(read_only_hint=True))
        def whoami(ctx: Context) -> str:
            """Who the caller is: the Authorization header quoted back, as verbose servers do."""
            record.calls.append(("whoami", {}))
            return f"You are {(ctx.headers or {}).get('authorization')}"

        promised = {"type": "object", "properties": {"open": {"type": "integer"}}}
        server._tool_manager.get_tool("count_tickets").fn_metadata.output_schema = promised

    for number in range(1, filler + 1):
        server.add_tool(lambda: "filler", name=f"tool_{number}", description="A filler tool.")

    if odd_text:

        @server.tool(description="Read a dump (its header is PK\x03\x04\x00\x00).")
        def read_dump(path: Annotated[str, Field(description="where\x00it is")]) -> str:
            return path

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def get_weather(city: str) -> str:
        """Today's weather in a city."""
        record.calls.append(("get_weather", {"city": city}))
        return f"Sunny in {city}, 21 °C"

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    def create_ticket(title: str) -> str:
        """Open a ticket in the team's tracker."""
        record.calls.append(("create_ticket", {"title": title}))
        record.tickets.append(title)
        return f"Created ticket #{len(record.tickets)}: {title}"

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    async def slow_lookup(seconds: float) -> str:
        """Look something up slowly (it takes the given number of seconds)."""
        record.calls.append(("slow_lookup", {"seconds": seconds}))
        await asyncio.sleep(seconds)
        record.finished_lookups += 1
        return f"Looked it up in {seconds:g} s"

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def broken() -> str:
        """A tool that always fails."""
        record.calls.append(("broken", {}))
        raise RuntimeError("the lookup table is missing")

    return server


class _Gate:
    """ASGI middleware: records each request's Authorization header and checks the token."""

    def __init__(
        self,
        app,
        record: ToolServerRecord,
        token: str | None,
        error: str | None,
        hang_on_close: bool = False,
    ):
        self.app, self.record, self.token, self.error = app, record, token, error
        self.hang_on_close = hang_on_close

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            receive = self._recording(receive)
            headers = dict(scope["headers"])
            authorization = headers.get(b"authorization", b"").decode()
            self.record.authorizations.append(authorization)
            self.record.encodings.append(headers.get(b"accept-encoding", b"").decode())
            if self.token is not None and authorization != f"Bearer {self.token}":
                await PlainTextResponse("unauthorised", status_code=401)(scope, receive, send)
                return
            if self.error is not None:
                await self._refuse(scope, receive, send)
                return
            if self.hang_on_close and scope["method"] == "DELETE":
                await asyncio.Event().wait()  # the session's end is never answered
        await self.app(scope, receive, send)

    def _recording(self, receive):
        """receive, noting the JSON-RPC method of each request body as it is read whole."""
        parts: list[bytes] = []

        async def recorded():
            message = await receive()
            parts.append(message.get("body", b""))
            if message["type"] == "http.request" and not message.get("more_body"):
                with contextlib.suppress(ValueError):
                    body = json.loads(b"".join(parts) or b"null")
                    if isinstance(body, dict) and "method" in body:
                        self.record.methods.append(body["method"])
            return message

        return recorded

    async def _refuse(self, scope, receive, send):
        body = await _read_body(receive)
        request_id = json.loads(body or b"{}").get("id")
        error = {"code": -32000, "message": self.error}
        answer = JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": error})
        await answer(scope, receive, send)


async def _read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def _replaying(body: bytes, receive):
    """An ASGI receive that gives the body already read, then goes on with `receive`."""
    replayed = False

    async def replay():
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _answering(app, method: str, result: str, status: int = 200, field: str = "result"):
    """ASGI middleware: `method` answered with `result`, JSON text as a server not built on
    the SDK may write it (NaN included), as the JSON-RPC answer's `field` (an `error` with an
    HTTP `status`); every other request goes on to the server."""

    async def answering(scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        body = await _read_body(receive)
        request = json.loads(body or b"{}")
        if isinstance(request, dict) and request.get("method") == method:
            request_id = json.dumps(request["id"])
            text = f'{{"jsonrpc": "2.0", "id": {request_id}, "{field}": {result}}}'
            answer = PlainTextResponse(text, status, media_type="application/json")
            return await answer(scope, receive, send)
        await app(scope, _replaying(body, receive), send)

    return answering


def _dropping_calls(app):
    """ASGI middleware: each tools/call opens an event stream that ends with nothing in it."""

    async def dropping(scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        body = await _read_body(receive)
        request = json.loads(body or b"{}")
        if isinstance(request, dict) and request.get("method") == "tools/call":
            ended = PlainTextResponse("", 200, media_type="text/event-stream")
            return await ended(scope, receive, send)
        await app(scope, _replaying(body, receive), send)

    return dropping


def _gzipped(app):
    """ASGI middleware: every response body gzipped, as a server ignoring Accept-Encoding."""

    async def gzipped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        start: dict = {}
        body: list[bytes] = []

        async def collect(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if not message.get("more_body"):
                    packed = gzip.compress(b"".join(body))
                    headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
                    headers += [
                        (b"content-encoding", b"gzip"),
                        (b"content-length", b"%d" % len(packed)),
                    ]
                    await send({**start, "headers": headers})
                    await send({"type": "http.response.body", "body": packed})

        await app(scope, receive, collect)

    return gzipped


class RunningToolServer:
    def __init__(
        self,
        token: str | None = None,
        odd_text: bool = False,
        error: str | None = None,
        extras: bool = False,
        filler: int = 0,
        json_response: bool = False,
        gzip: bool = False,
        tools: str | None = None,
        hang_on_close: bool = False,
        call_result: str | None = None,
        call_error: str | None = None,
        drop_calls: bool = False,
    ):
        self.record = ToolServerRecord()
        built = build_server(self.record, odd_text, extras, filler)
        app = built.streamable_http_app(json_response=json_response)
        if gzip:
            app = _gzipped(app)
        if tools is not None:
            app = _answering(app, "tools/list", f'{{"tools": {tools}}}')
        if call_result is not None:
            app = _answering(app, "tools/call", call_result)
        if call_error is not None:
            refusal = json.dumps({"code": -32602, "message": call_error})
            app = _answering(app, "tools/call", refusal, status=400, field="error")
        if drop_calls:
            app = _dropping_calls(app)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        config = uvicorn.Config(
            _Gate(app, self.record, token, error, hang_on_close),
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name="mcp-tool-server",
            daemon=True,
        )
        self._thread.start()
        wait_for(lambda: self._server.started or not self._thread.is_alive(), "the MCP server")
        if not self._server.started:
            raise RuntimeError("the MCP tool server did not start")
        self.stopped = False

    @property
    def calls(self) -> list[tuple[str, dict]]:
        return list(self.record.calls)

    def stop(self) -> None:
        """Take the server away: later connections to its port are refused."""
        if self.stopped:
            return
        self.stopped = True
        self._server.should_exit = True
        self._thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self._sock.close()
        # Nothing listens any more: a connection is refused rather than left waiting.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)


@contextlib.contextmanager
def run_tool_server(
    token: str | None = None,
    odd_text: bool = False,
    error: str | None = None,
    extras: bool = False,
    filler: int = 0,
    json_response: bool = False,
    gzip: bool = False,
    tools: str | None = None,
    hang_on_close: bool = False,
    call_result: str | None = None,
    call_error: str | None = None,
    drop_calls: bool = False,
) -> Iterator[RunningToolServer]:
    server = RunningToolServer(
        token,
        odd_text,
        error,
        extras,
        filler,
        json_response,
        gzip,
        tools,
        hang_on_close,
        call_result,
        call_error,
        drop_calls,
    )
    try:
        yield server
    finally:
        server.stop()
