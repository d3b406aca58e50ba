"""httpcore's connections on asyncio's own transports, for the streams the server relays.

httpcore's default backend goes through anyio, which around every read enters a cancel scope
and resumes then pauses the transport's reading (two `epoll_ctl` calls); at chat pace a read
is one token, so that is paid per token per answer. Here a protocol buffers what arrives and a
read waits on one future only when the buffer is empty; reading pauses only when a reader
falls 256 KiB behind. bench/README.md has the figures.

Plain asyncio transports, so uvloop's (chatapp.core.server) when the server runs on it.

`LinearPool` is httpcore's connection pool with its bookkeeping done in one pass: the server
holds one connection per streaming answer, hundreds at a time, and httpcore 1.0 walks them
all once per idle connection at every request and every response's end.
"""

import asyncio
import ssl
import typing
from collections.abc import Iterator
from contextlib import contextmanager

import httpcore
import httpx

HIGH_WATER = 256 * 1024  # buffered bytes at which the socket's reading pauses


@contextmanager
def _mapped(timeout_error: type[Exception], os_error: type[Exception]) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise timeout_error(str(exc) or "timed out") from exc
    except (OSError, ssl.SSLError, EOFError) as exc:
        raise os_error(str(exc) or type(exc).__name__) from exc


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        # Made by the loop's create_connection; kept, since on Python 3.11 each
        # get_running_loop() is a getpid() system call, and a read is one per token.
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: Exception | None = None
        self.reader: asyncio.Future[None] | None = None  # set while a read waits for data
        self.writable: asyncio.Future[None] | None = None  # set while writing is paused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None:
            if not self.writable.done():
                self.writable.set_result(None)
            self.writable = None

    def _wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.buffer and not protocol.eof:
            protocol.reader = protocol.loop.create_future()
            try:
                if timeout is None:  # the Llama client's reads: its own deadlines bound them
                    await protocol.reader  # only ever given a result: nothing to map
                else:
                    with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
                        async with asyncio.timeout(timeout):
                            await protocol.reader
            finally:
                protocol.reader = None
        if not protocol.buffer:
            if protocol.error is not None:
                raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
            return b""
        data = bytes(protocol.buffer[:max_bytes])
        del protocol.buffer[:max_bytes]
        if len(protocol.buffer) <= HIGH_WATER // 4 and not self._transport.is_closing():
            self._transport.resume_reading()  # a no-op unless reading was paused
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("The connection is closed.")
        self._transport.write(buffer)
        if (writable := self._protocol.writable) is not None:
            with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
                async with asyncio.timeout(timeout):
                    await writable

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
                async with asyncio.timeout(timeout):
                    transport = await loop.start_tls(
                        self._transport,
                        self._protocol,
                        ssl_context,
                        server_hostname=server_hostname,
                    )
        except BaseException:
            self._transport.abort()
            raise
        if transport is None:
            raise httpcore.ConnectError("The connection closed before TLS started.")
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":  # httpcore's test of an idle pooled connection
            return bool(self._protocol.buffer) or self._protocol.eof
        key = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        if key in ("ssl_object", "sockname", "peername", "socket"):
            return self._transport.get_extra_info(key)
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local_addr = None if local_address is None else (local_address, 0)
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol, host, port, local_addr=local_addr
                )
        for option in socket_options or ():
            transport.get_extra_info("socket").setsockopt(*option)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(_Protocol, path)
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class LinearPool(httpcore.AsyncConnectionPool):
    """httpcore's pool for HTTP/1.1 with `_assign_requests_to_connections` in linear time.

    httpcore 1.0.9 (its last release) counts connections once per idle connection, so a pass
    is quadratic, and it counts every connection as idle, so above the keep-alive limit in all
    every idle connection closes and each new request connects again (encode/httpcore#1035;
    httpx2's httpcore2 has the same fix). Here a pass walks the connections and the requests
    once. A connection assigned to a request that has not started on it yet is spoken for:
    it is neither closed as surplus nor handed to a second request.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        requests = self._requests
        # Most connections carry a streaming answer: a set lookup passes them, no state asked.
        spoken_for = {id(r.connection) for r in requests if r.connection is not None}
        closing: list[httpcore.AsyncConnectionInterface] = []
        kept: list[httpcore.AsyncConnectionInterface] = []
        free: list[httpcore.AsyncConnectionInterface] = []  # idle and not spoken for, oldest first
        for connection in self._connections:
            if id(connection) in spoken_for:
                kept.append(connection)
            elif connection.is_closed():
                continue
            elif connection.has_expired():
                closing.append(connection)
            else:
                kept.append(connection)
                if connection.is_idle():
                    free.append(connection)
        surplus = len(free) - self._max_keepalive_connections
        if surplus > 0:
            closing += free[:surplus]
            free = free[surplus:]
            surplus_ids = {id(connection) for connection in closing}
            kept = [connection for connection in kept if id(connection) not in surplus_ids]
        self._connections = kept

        for request in requests:
            if request.connection is not None:  # not queued
                continue
            origin = request.request.url.origin
            reusable = next((c for c in free if c.can_handle_request(origin)), None)
            if reusable is not None:
                free.remove(reusable)
                connection = reusable
            elif len(self._connections) < self._max_connections:
                connection = self.create_connection(origin)
                self._connections.append(connection)
            elif free:  # at the limit: an idle connection to another origin makes room
                closing.append(victim := free.pop(0))
                self._connections.remove(victim)
                connection = self.create_connection(origin)
                self._connections.append(connection)
            else:
                continue  # waits for a connection to come free
            request.assign_to_connection(connection)
        return closing


class AsyncioTransport(httpx.AsyncHTTPTransport):
    """httpx's HTTP/1.1 transport with its connection pool on `backend` (AsyncioBackend unless
    given): httpx has no public hook for the network backend, so the pool is replaced."""

    def __init__(
        self,
        *,
        max_keepalive_connections: int,
        backend: httpcore.AsyncNetworkBackend | None = None,
        trust_env: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        # One TLS context (loading the CA bundle takes some 30 ms), for httpx's pool and ours.
        ssl_context = ssl_context or httpx.create_ssl_context(trust_env=trust_env)
        super().__init__(verify=ssl_context, trust_env=trust_env)
        self._pool = LinearPool(
            ssl_context=ssl_context,
            max_connections=None,  # every streaming answer holds one connection for its length
            max_keepalive_connections=max_keepalive_connections,
            network_backend=backend or AsyncioBackend(),
        )
