"""Tool server URLs go through the provider's network guard: when saved and at every connection."""

import asyncio
import ssl
from contextlib import suppress

import pytest

from chatapp.tools import mcp_client, network
from chatapp.tools.actions import ToolActionError, check_url
from tests.support.ports import free_port
from tests.support.tls import self_signed


@pytest.fixture(autouse=True)
def private_refused(settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = False


def test_a_refused_host_name_is_named_without_its_addresses():
    with pytest.raises(ToolActionError) as refused:
        check_url("https://localhost:8443/mcp")
    message = refused.value.message
    assert message.startswith(
        "The tool server localhost resolves to a private or reserved address, not a public address"
    )
    assert "127.0.0.1" not in message and "::1" not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/mcp",
        "https://localhost:8443/mcp",
        "https://10.1.2.3/mcp",
        "https://192.168.0.10/mcp",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/mcp",
        "https://[::ffff:127.0.0.1]/mcp",
        "https://[fe80::1]/mcp",
        "https://0.0.0.0/mcp",
    ],
)
def test_private_addresses_are_refused(url):
    with pytest.raises(ToolActionError) as refused:
        check_url(url)
    assert refused.value.code == "url_refused"
    assert refused.value.field == "url"
    assert "not a public address" in refused.value.message
    assert "LLAMA_ALLOW_PRIVATE_PROVIDER_URLS" in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://9.9.9.9/mcp",
        "ftp://9.9.9.9/mcp",
        "file:///etc/passwd",
        "gopher://9.9.9.9/",
        "unix:///var/run/docker.sock",
        "https://user:secret@9.9.9.9/mcp",
        "https://token@9.9.9.9/mcp",
        "https://9.9.9.9/mcp?key=secret",
        "https://9.9.9.9/mcp#x",
        "https://9.9.9.9:99999/mcp",
        "https://9.9.9.9/m cp",
        "https:///mcp",
        "",
    ],
)
def test_urls_of_the_wrong_form_are_refused(url):
    with pytest.raises(ToolActionError) as refused:
        check_url(url)
    assert refused.value.code == "invalid"
    assert refused.value.field == "url"


def test_a_public_https_url_is_accepted():
    assert check_url(" https://9.9.9.9/mcp ") == "https://9.9.9.9/mcp"


def test_private_addresses_and_http_are_allowed_by_the_setting(settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    assert check_url("http://127.0.0.1:9/mcp") == "http://127.0.0.1:9/mcp"


async def test_the_guard_refuses_at_connect_time_without_sending(mcp_server):
    """A URL saved while allowed (or a name that now resolves elsewhere) is checked again."""
    https_url = mcp_server.url.replace("http://", "https://")
    with pytest.raises(mcp_client.ToolServerError) as refused:
        await mcp_client.list_tools(https_url, "a-token", 5)
    assert "The tool server 127.0.0.1 is not a public address: " in refused.value.message
    assert mcp_server.record.authorizations == []


async def test_plain_http_is_refused_at_connect_time(mcp_server):
    with pytest.raises(mcp_client.ToolServerError) as refused:
        await mcp_client.list_tools(mcp_server.url, "a-token", 5)
    assert refused.value.message == "Tool server URLs must use https."
    assert mcp_server.record.authorizations == []


def test_tool_server_connections_share_one_tls_context():
    """A context of their own would load the CA bundle, tens of milliseconds on the event loop,
    for every connection."""
    first, second = (network.GuardedTransport(network.Trouble()) for _ in range(2))
    assert first._pool._ssl_context is second._pool._ssl_context is network.tls_context()
    assert network.tls_context().verify_mode == ssl.CERT_REQUIRED


@pytest.fixture
async def tls_server(tmp_path, settings):
    """A loopback TLS server whose certificate names "localhost", signed by itself."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    server_context, _ = self_signed(tmp_path)

    async def connection(reader, writer):
        with suppress(ConnectionError, ssl.SSLError):  # the client refused the handshake
            await reader.read()
        writer.close()

    port = free_port()
    async with await asyncio.start_server(connection, "127.0.0.1", port, ssl=server_context):
        yield port, tmp_path / "cert.pem"
    network.tls_context.cache_clear()


async def test_an_untrusted_certificate_says_the_tls_check_failed(tls_server):
    port, _ = tls_server
    with pytest.raises(mcp_client.ToolServerError) as failed:
        await mcp_client.list_tools(f"https://localhost:{port}/mcp", "a-secret-token", 5)
    assert failed.value.message == (
        "The tool server at localhost failed the TLS certificate check (self-signed"
        " certificate): its certificate must be valid for the URL's host name and signed by a"
        " public certificate authority."
    )


async def test_a_certificate_for_another_host_name_says_the_tls_check_failed(tls_server):
    port, certificate = tls_server
    network.tls_context.cache_clear()
    network.tls_context().load_verify_locations(certificate)  # trusted, but for "localhost"
    with pytest.raises(mcp_client.ToolServerError) as failed:
        await mcp_client.list_tools(f"https://127.0.0.1:{port}/mcp", "a-secret-token", 5)
    assert failed.value.message == (
        "The tool server at 127.0.0.1 failed the TLS certificate check (IP address mismatch,"
        " certificate is not valid for '127.0.0.1'): its certificate must be valid for the"
        " URL's host name and signed by a public certificate authority."
    )


async def test_a_port_that_does_not_speak_tls_says_the_tls_connection_failed(settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True

    async def plain(reader, writer):
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    port = free_port()
    async with await asyncio.start_server(plain, "127.0.0.1", port):
        with pytest.raises(mcp_client.ToolServerError) as failed:
            await mcp_client.list_tools(f"https://127.0.0.1:{port}/mcp", "a-secret-token", 5)
    assert failed.value.message == (
        "The TLS connection to the tool server at 127.0.0.1 failed: check that the URL's port"
        " serves https."
    )
