"""AiohttpTransport: httpx's requests over aiohttp's connections, against real local servers."""

import asyncio
import ssl

import httpx
import pytest

from chatapp.llm.network import AiohttpTransport, tls_context
from tests.support.ports import free_port
from tests.support.tls import self_signed

BIG = bytes(range(256)) * 4096  # 1 MiB: many times the buffer at which reading pauses


def client(**transport_options) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=AiohttpTransport(**transport_options), timeout=10)


async def serve(handler, ssl_context=None, peers=None):
    """A one-route HTTP/1.1 server: `handler(reader, writer)` answers each request;
    `peers` collects each connection's client address."""

    async def connection(reader, writer):
        if peers is not None:
            peers.append(writer.get_extra_info("peername"))
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                if not await handler(reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    port = free_port()
    server = await asyncio.start_server(connection, "127.0.0.1", port, ssl=ssl_context)
    return server, port


async def chunked_events(reader, writer) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
    writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
    for n in range(20):
        event = f"data: {n}\n\n".encode()
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        await asyncio.sleep(0)
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True  # keep the connection for the next request


async def big_body(reader, writer) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BIG))
    writer.write(BIG)
    await writer.drain()
    return True


async def cut_short(reader, writer) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
    await writer.drain()
    return False  # close with 993 bytes owed


async def test_a_chunked_stream_arrives_whole_and_the_connection_is_reused():
    peers: list = []
    server, port = await serve(chunked_events, peers=peers)
    async with server, client() as http:
        for _ in range(2):
            async with http.stream("GET", f"http://127.0.0.1:{port}/") as response:
                body = b"".join([chunk async for chunk in response.aiter_raw()])
            assert body == b"".join(f"data: {n}\n\n".encode() for n in range(20))
    assert len(peers) == 1  # the second request reused the first connection


async def test_a_body_left_half_read_does_not_leave_its_connection_for_the_next():
    peers: list = []
    server, port = await serve(big_body, peers=peers)
    async with server, client() as http:
        async with http.stream("GET", f"http://127.0.0.1:{port}/") as response:
            async for _ in response.aiter_raw():
                break
        assert (await http.get(f"http://127.0.0.1:{port}/")).content == BIG
    assert len(peers) == 2


async def test_a_post_body_and_the_headers_arrive_as_sent():
    seen: dict = {}

    async def echo(reader, writer) -> bool:
        seen["body"] = await reader.readexactly(11)
        writer.write(b"HTTP/1.1 201 Created\r\nX-Request-Id: r-1\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return True

    async def connection_head(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        seen["head"] = head.decode("latin-1").lower()
        await echo(reader, writer)
        writer.close()

    port = free_port()
    server = await asyncio.start_server(connection_head, "127.0.0.1", port)
    async with server, client() as http:
        response = await http.post(
            f"http://127.0.0.1:{port}/v1", content=b"hello there", headers={"X-Key": "k"}
        )
    assert (response.status_code, response.reason_phrase, response.text) == (201, "Created", "ok")
    assert response.headers["x-request-id"] == "r-1"
    assert seen["body"] == b"hello there"
    assert "post /v1 http/1.1" in seen["head"] and "x-key: k" in seen["head"]
    assert "content-length: 11" in seen["head"]


async def test_a_body_larger_than_the_buffer_arrives_whole_when_read_slowly():
    server, port = await serve(big_body)
    async with server, client() as http:
        async with http.stream("GET", f"http://127.0.0.1:{port}/") as response:
            parts = []
            async for chunk in response.aiter_raw():
                parts.append(chunk)
                await asyncio.sleep(0.001)  # the server fills the buffer: reading pauses
        assert b"".join(parts) == BIG


async def test_a_connection_closed_mid_body_is_a_read_error():
    server, port = await serve(cut_short)
    async with server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(f"http://127.0.0.1:{port}/")


async def test_a_server_that_closed_an_idle_connection_gets_a_new_one():
    async def once(reader, writer) -> bool:
        await chunked_events(reader, writer)
        return False  # closes after each answer, without saying so

    server, port = await serve(once)
    async with server, client() as http:
        for _ in range(3):
            assert (await http.get(f"http://127.0.0.1:{port}/")).status_code == 200
            await asyncio.sleep(0.05)  # the close arrives while the connection is idle


async def test_a_refused_connection_is_a_connect_error():
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{free_port()}/")


async def test_tls_streams_and_checks_the_certificate(tmp_path):
    server_context, trusting = self_signed(tmp_path)
    server, port = await serve(chunked_events, ssl_context=server_context)
    async with server:
        async with client(ssl_context=trusting) as http:
            response = await http.get(f"https://localhost:{port}/")
            assert response.text.startswith("data: 0\n\n")
        async with client(ssl_context=ssl.create_default_context()) as http:
            with pytest.raises(httpx.ConnectError):  # not trusted by the system's CAs
                await http.get(f"https://localhost:{port}/")


def test_every_transport_shares_the_process_s_tls_context():
    """Loading the CA bundle is tens of milliseconds on the event loop: once per process."""
    first, second = AiohttpTransport(), AiohttpTransport()
    assert first._ssl_context is second._ssl_context is tls_context()
    assert first._ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert AiohttpTransport(trust_env=False)._ssl_context is tls_context(False)
    assert AiohttpTransport(ssl_context=(own := ssl.create_default_context()))._ssl_context is own


async def test_a_read_timeout_is_httpx_s():
    async def silent(reader, writer) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)
        return False

    server, port = await serve(silent)
    async with server, client() as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"http://127.0.0.1:{port}/", timeout=httpx.Timeout(5, read=0.1))
