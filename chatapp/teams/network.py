"""Connections to team-entered provider URLs: https to public addresses only, no redirects.

Every new connection resolves the host itself, refuses it when any address is private,
loopback, link-local, multicast, reserved or unspecified (also when wrapped in IPv6: mapped,
6to4, NAT64, Teredo), and then connects to the address it
checked (so a DNS answer that changes between check and connect cannot slip through).
LLAMA_ALLOW_PRIVATE_PROVIDER_URLS lets a site admin allow private addresses and plain http,
for self-hosted servers. The site's own LLAMA_API_BASE_URL is trusted and never goes through here.
"""

import asyncio
import ipaddress
import socket
import typing
import weakref

import aiohttp
import anyio
import httpx
from aiohttp.abc import ResolveResult
from django.conf import settings

from chatapp.llm import LlamaClient
from chatapp.llm.client import USER_AGENT
from chatapp.llm.errors import DestinationRefused
from chatapp.llm.network import AiohttpTransport

ALLOW_SETTING = "LLAMA_ALLOW_PRIVATE_PROVIDER_URLS"

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


T = typing.TypeVar("T")


class BlockedAddressError(DestinationRefused):
    """The provider host is not a public address; nothing was sent."""


def private_allowed() -> bool:
    return bool(getattr(settings, ALLOW_SETTING, False))


# IPv6 forms that carry an IPv4 address inside: refused outright (6to4, IPv4-compatible,
# local-use NAT64, Teredo), whatever they wrap, as a relay or gateway would unwrap them.
WRAPPING_NETWORKS = [
    ipaddress.ip_network(n) for n in ("2002::/16", "::/96", "64:ff9b:1::/48", "2001::/32")
]
# Forms judged by the IPv4 address they carry: IPv4-mapped and well-known-prefix NAT64.
EMBEDDING_NETWORKS = [ipaddress.ip_network(n) for n in ("::ffff:0:0/96", "64:ff9b::/96")]


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in WRAPPING_NETWORKS):
            return False
        if any(ip in network for network in EMBEDDING_NETWORKS):
            # ::ffff:127.0.0.1 and 64:ff9b::7f00:1 are loopback, whatever their notation.
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_link_local:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return False
    return ip.is_global


def not_public(host: str) -> str:
    """The host as the admin typed it, and why it is refused: never the addresses it
    resolved to, which would map the site's own network for whoever may enter a URL."""
    if _literal_address(host):
        return f"{host} is not a public address"
    return f"{host} resolves to a private or reserved address, not a public address"


def refusal(host: str) -> str:
    return (
        f"The provider address {not_public(host)}: team provider URLs must reach the internet"
        f" (a site admin can allow private addresses with {ALLOW_SETTING})."
    )


def blocked_address(host: str, addresses: typing.Iterable[str]) -> str | None:
    """The first address that may not be reached, or None when all are fine."""
    if private_allowed():
        return None
    return next((a for a in addresses if not is_public_address(a)), None)


def resolve(host: str, port: int) -> list[str]:
    """Blocking resolution, for checking a URL when a form is saved."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_url_host(host: str, port: int) -> str | None:
    """A message saying why the host may not be used, or None when it may."""
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        return f"The host {host} could not be resolved: check the address."
    return refusal(host) if blocked_address(host, addresses) else None


async def connect_checked(
    host: str,
    port: int,
    timeout: float | None,
    connect: typing.Callable[[str], typing.Awaitable[T]],
    refuse: typing.Callable[[str], Exception],
    errors: typing.Any,
) -> T:
    """Resolve `host`, refuse it when any address may not be reached (`refuse(host)` is
    raised), then `connect(address)` to exactly the addresses that were checked, in order.

    `errors` is the httpcore module of the caller's HTTP stack (the MCP SDK's httpcore2):
    resolution failures become its ConnectTimeout / ConnectError."""
    try:
        with anyio.fail_after(timeout):
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise errors.ConnectTimeout(f"Resolving {host} timed out") from None
    except (OSError, UnicodeError) as exc:
        raise errors.ConnectError(f"Could not resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if blocked_address(host, addresses):
        raise refuse(host)
    error: Exception = errors.ConnectError(f"No address found for {host}")
    for address in addresses:
        try:
            return await connect(address)
        except errors.ConnectError as exc:
            error = exc
    raise error


class GuardedResolver(aiohttp.abc.AbstractResolver):
    """Resolves a provider's host and refuses it when any address may not be reached; the
    connection then goes to exactly the addresses returned here, as checked."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        except UnicodeError as exc:
            raise OSError(f"Could not resolve {host}: {exc}") from None
        if blocked_address(host, [str(info[4][0]) for info in infos]):
            raise BlockedAddressError(refusal(host))
        return [
            ResolveResult(
                hostname=host,
                host=str(address[0]),
                port=port,
                family=address_family,
                proto=proto,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address_family, _, proto, _, address in infos
        ]

    async def close(self) -> None:
        pass


def _literal_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class GuardedTransport(AiohttpTransport):
    def __init__(self) -> None:
        # No proxies: a proxy would connect for us, unchecked.
        super().__init__(resolver=GuardedResolver(), trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        refused: DestinationRefused | None = None
        if request.url.scheme != "https" and not private_allowed():
            refused = DestinationRefused("Team provider URLs must use https.")
        elif _literal_address(host) and blocked_address(host, [host]):
            refused = BlockedAddressError(refusal(host))  # no lookup: nothing to resolve
        if refused is not None:
            raise httpx.ConnectError(str(refused), request=request) from refused
        return await super().handle_async_request(request)


def guarded_http_client() -> httpx.AsyncClient:
    """The pooled client for team-entered URLs, one per event loop; never follows redirects."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            transport=GuardedTransport(),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )
        _clients[loop] = client
    return client


class GuardedLlamaClient(LlamaClient):
    """A LlamaClient whose connections always go through the network guard."""

    @property
    def http(self) -> httpx.AsyncClient:
        return guarded_http_client()
