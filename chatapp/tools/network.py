"""Connections to team tool servers, under the same guard as team provider URLs.

The MCP SDK speaks HTTP through httpx2 (its own fork of httpx), so the provider's guarded
transport (chatapp.teams.network, on httpx) cannot be handed to it; this is the same guard
on httpx2's connection pool: every connection resolves the host itself, refuses private,
loopback, link-local and other non-public addresses (unless LLAMA_ALLOW_PRIVATE_PROVIDER_URLS)
and connects to exactly the addresses it checked; plain http only when private addresses are
allowed; no proxies from the environment; no redirects (the SDK follows none off the origin).
"""

import functools
import ssl
import typing

import httpcore2
import httpx2

from chatapp.llm.client import USER_AGENT
from chatapp.teams.network import ALLOW_SETTING, connect_checked, not_public, private_allowed

# One message from a server (a tool's result, a page of its list) is read whole up to this;
# a result is then cut to what goes back to the model (chatapp.chat.tooling.capped).
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
TOO_LARGE = "sent a message larger than 8 MiB: ask for less."
COMPRESSED = "sent a compressed answer, which this site asks not to get (its size is unknown)."


class ToolServerRefused(Exception):
    """The tool server's address may not be reached from this site; nothing was sent."""


class MessageTooLarge(Exception):
    """A tool server's answer ran past MAX_MESSAGE_BYTES (the rest was not read), or came
    compressed though asked not to be, when its size would be known only once inflated."""


def refusal(host: str) -> str:
    return (
        f"The tool server {not_public(host)}: tool servers must be reachable on the internet"
        f" (a site admin can allow private addresses with {ALLOW_SETTING})."
    )


class GuardedNetworkBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        def connect(address: str) -> typing.Awaitable[httpcore2.AsyncNetworkStream]:
            return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

        def refuse(host: str) -> Exception:
            return ToolServerRefused(refusal(host))

        return await connect_checked(host, port, timeout, connect, refuse, httpcore2)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise ToolServerRefused("Tool servers cannot use unix sockets.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class Trouble:
    """What went wrong on one connection: the MCP SDK reports HTTP failures only vaguely."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.status: int | None = None
        self.explained = False  # the error status came with a JSON body (a JSON-RPC error)


class LimitedStream(httpx2.AsyncByteStream):
    """A body read whole (JSON): the SDK would read it all into memory, however large."""

    def __init__(self, stream: httpx2.AsyncByteStream, trouble: Trouble) -> None:
        self._stream, self._trouble = stream, trouble

    async def __aiter__(self) -> typing.AsyncIterator[bytes]:
        read = 0
        async for chunk in self._stream:
            read += len(chunk)
            if read > MAX_MESSAGE_BYTES:
                self._trouble.error = MessageTooLarge(TOO_LARGE)
                raise self._trouble.error
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every tool server connection of the process, made by the first:
    loading the CA bundle takes 30-60 ms of CPU on the event loop."""
    return httpx2.create_ssl_context(trust_env=False)


class GuardedTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, trouble: Trouble) -> None:
        # No proxy: a proxy would connect for us, unchecked.
        super().__init__(verify=tls_context(), trust_env=False)
        self.trouble = trouble
        # httpx2 has no public hook for the network backend: give it a pool that uses ours.
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=tls_context(),
            max_connections=10,
            network_backend=GuardedNetworkBackend(),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            if request.url.scheme != "https" and not private_allowed():
                raise ToolServerRefused("Tool server URLs must use https.")
            response = await super().handle_async_request(request)
        except Exception as exc:
            self.trouble.error = exc
            raise
        if response.status_code >= 400:
            self.trouble.status = response.status_code
            content_type = response.headers.get("content-type", "").lower()
            self.trouble.explained = content_type.startswith("application/json")
        stream = response.stream
        if isinstance(stream, httpx2.AsyncByteStream) and not response.headers.get(
            "content-type", ""
        ).startswith("text/event-stream"):
            # An event stream's events are bounded by the SDK (max_sse_event_size).
            if response.headers.get("content-encoding", "identity").lower() != "identity":
                await response.aclose()
                self.trouble.error = MessageTooLarge(COMPRESSED)
                raise self.trouble.error
            response.stream = LimitedStream(stream, self.trouble)
        return response


def guarded_client(token: str, timeout: float, trouble: Trouble) -> httpx2.AsyncClient:
    """A client for one tool server connection; the caller closes it."""
    # Uncompressed: the size read is the size kept (LimitedStream).
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.AsyncClient(
        transport=GuardedTransport(trouble),
        headers=headers,
        timeout=httpx2.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
    )
