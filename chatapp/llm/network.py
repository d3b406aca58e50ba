"""httpx's requests and responses over aiohttp's connections, for the streams the server relays.

The Llama client speaks httpx (requests, responses, timeouts, errors); this transport carries
them. httpcore, httpx's own, parses each chunk of a response in Python (h11) and hands it up
through five layers of async generators; at chat pace a chunk is one token, so that is paid
per token per answer. aiohttp parses in C (llhttp) as the bytes arrive, and a read is one
await on its buffer: in a reader of 200 streams at 30 tokens a second, 37-43 µs of CPU a
token against 64-71 µs through httpcore (bench/README.md). Its pool finds an idle connection
in a dict, where httpcore's walks all of them, hundreds while answers stream.

Plain asyncio transports, so uvloop's (chatapp.core.server) when the server runs on it.
"""

import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from functools import cache

import aiohttp
import httpx

from .errors import DestinationRefused


def _failure(exc: Exception, reading: bool) -> httpx.TransportError:
    """aiohttp's error as the httpx error it stands for (LlamaClient tells them apart)."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, TimeoutError):  # aiohttp's socket read timeout is one too
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unresolved, TLS refused
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message)  # a body cut short, a malformed response
    if isinstance(exc, aiohttp.ServerDisconnectedError) and not reading:
        return httpx.RemoteProtocolError("Server disconnected without sending a response.")
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    return httpx.ReadError(message)


@contextmanager
def _mapped(reading: bool) -> Iterator[None]:
    try:
        yield
    except DestinationRefused as exc:  # a network policy said no before connecting
        raise httpx.ConnectError(str(exc)) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
        raise _failure(exc, reading) from exc


class _Body(httpx.AsyncByteStream):
    """A response body as it arrives, undecoded (httpx decodes what needs it)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with _mapped(reading=True):
            while chunk := await content.readany():
                yield chunk

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # the connection goes back to the pool
        else:
            self._response.close()  # a body left half read: its connection cannot be reused


async def _closed_with_the_loop(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Suspended until its event loop closes its async generators (asyncio.run() does at its
    end), then closes the session: a session left open is reported when collected."""
    try:
        yield
    finally:
        await session.close()


def tls_context(trust_env: bool = True) -> ssl.SSLContext:
    """The process's TLS context for upstream connections, shared by every transport.

    Loading the CA bundle takes 30-60 ms of CPU: made on the event loop, it would hold up the
    first answer and every stream of the process, so the server makes it at start
    (chatapp/asgi.py). With trust_env, httpx reads SSL_CERT_FILE and SSL_CERT_DIR, as they
    are when it is made.
    """
    return _tls_context(bool(trust_env))


@cache
def _tls_context(trust_env: bool) -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=trust_env)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport on one aiohttp session, made on the event loop of its first request
    and closed with `aclose()` or with that loop.

    Timeouts: httpx's connect (DNS, TCP and TLS together) and read (between reads); aiohttp has
    no write timeout. Redirects are never followed here (httpx decides). No limit on open
    connections: every streaming answer holds one for its length, and idle ones are closed
    after aiohttp's keep-alive time.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        trust_env: bool = True,
        resolver: aiohttp.abc.AbstractResolver | None = None,
    ) -> None:
        self._ssl_context = ssl_context or tls_context(trust_env)
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._closer: AsyncGenerator[None, None] | None = None

    async def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,
                ssl=self._ssl_context,
                resolver=self._resolver,
                # A checking resolver checks every connection's lookup, not a cached one.
                use_dns_cache=self._resolver is None,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                # aiohttp's would look for ~/.netrc and the proxy variables in a thread at every
                # request: two trips through the loop's executor, +3 ms to a first token in the
                # server. No proxy, as with httpx's own transport here before (httpx reads the
                # proxy variables only when it picks the transport itself).
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                raise_for_status=False,
            )
            self._closer = _closed_with_the_loop(self._session)
            await anext(self._closer)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = await self._open_session()
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        body = await request.aread()
        with _mapped(reading=False):
            response = await session.request(
                request.method,
                str(request.url),
                headers=[(k.decode(), v.decode("latin-1")) for k, v in request.headers.raw],
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
            )
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        if self._closer is not None:
            await self._closer.aclose()  # closes the session
