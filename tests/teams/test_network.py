"""The network guard for team-entered provider URLs, against the real simulator on loopback.

Refused addresses are refused before any connection is attempted: the tests never reach them.
"""

import asyncio
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from chatapp.llm import ProviderConfig
from chatapp.teams.network import (
    GuardedLlamaClient,
    check_url_host,
    guarded_http_client,
    is_public_address,
)

from .conftest import TEAM_KEY
from .helpers import ask, failure, finished, text_of


def guarded(base_url: str, protocol: str = "llama") -> GuardedLlamaClient:
    return GuardedLlamaClient(ProviderConfig(base_url, TEAM_KEY, protocol, max_attempts=1))


@pytest.fixture
def guard_on(settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = False


@pytest.fixture
def private_allowed(settings):
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fec0::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",  # IPv4-compatible
        "2002:7f00:1::1",  # 6to4 around 127.0.0.1
        "2002:a00:1::1",  # 6to4 around 10.0.0.1
        "2002:808:808::1",  # 6to4 at all
        "64:ff9b::7f00:1",  # NAT64 around 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo around 127.0.0.1
    ],
)
def test_private_and_special_addresses_are_not_public(address):
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address", ["9.9.9.9", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808"]
)
def test_public_addresses_are_public(address):
    assert is_public_address(address)


def test_a_host_name_is_judged_by_what_it_resolves_to(guard_on):
    problem = check_url_host("localhost", 443)
    assert problem.startswith(
        "The provider address localhost resolves to a private or reserved address,"
        " not a public address: "
    )
    # The name typed, never what it resolved to: that would map the site's own network.
    assert "127.0.0.1" not in problem and "::1" not in problem
    assert check_url_host("9.9.9.9", 443) is None


def test_the_site_switch_lets_private_host_names_pass(private_allowed):
    assert check_url_host("localhost", 443) is None


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::1]", "localhost", "10.0.0.1", "169.254.169.254", "[::ffff:127.0.0.1]"],
)
def test_the_guard_refuses_private_addresses_before_connecting(guard_on, sim, host):
    port = sim.base_url.rsplit(":", 1)[1]
    url = f"https://{host}:{port}/v1"
    assert refusal(url + "/chat/completions") == "not a public address"
    error = failure(ask(guarded(url)))
    assert (error.code, error.retryable) == ("provider_refused", False)
    assert "not a public address" in error.message
    assert sim.requests == []


def test_the_guard_refuses_plain_http(guard_on, sim):
    assert refusal(sim.native_url + "/chat/completions") == "must use https"
    error = failure(ask(guarded(sim.native_url)))
    assert (error.code, error.message) == ("provider_refused", "Team provider URLs must use https.")
    assert sim.requests == []


def refusal(url: str) -> str:
    """Why the guarded HTTP client refused to send a request to url."""

    async def attempt():
        try:
            await guarded_http_client().post(url, json={})
        except httpx.ConnectError as exc:
            return str(exc)
        raise AssertionError(f"{url} was reached")

    reason = asyncio.run(attempt())
    return next(r for r in ("not a public address", "must use https") if r in reason)


def test_the_site_switch_allows_a_server_on_loopback(private_allowed, sim):
    events = ask(guarded(sim.native_url), "Hello, private server")
    assert finished(events) and "Hello, private server" in text_of(events)
    assert len(sim.requests) == 1


def test_the_openai_protocol_through_the_guard(private_allowed, sim):
    assert finished(ask(guarded(sim.openai_url, "openai")))


class Redirect(BaseHTTPRequestHandler):
    target = ""

    def do_POST(self):
        self.send_response(307)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def redirector(sim):
    Redirect.target = sim.native_url + "/chat/completions"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_redirects_are_not_followed(private_allowed, sim, redirector):
    error = failure(ask(guarded(redirector)))
    assert error.status == 307
    assert sim.requests == []


def test_the_key_is_in_no_log_line_or_error(private_allowed, sim, caplog):
    sim.app.api_key = "another-key"  # the team key is refused
    with caplog.at_level(logging.DEBUG):
        error = failure(ask(guarded(sim.native_url)))
    assert error.code == "auth_failed"
    assert TEAM_KEY not in error.message
    assert TEAM_KEY not in caplog.text
