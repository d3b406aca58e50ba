"""Tool server URLs go through the provider's network guard: when saved and at every connection."""

import ssl

import pytest

from chatapp.tools import mcp_client, network
from chatapp.tools.actions import ToolActionError, check_url


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
