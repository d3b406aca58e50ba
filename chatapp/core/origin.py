"""The chat websocket accepts pages of this very site: Origin's scheme, host and port must be
the site's own (as Django's CSRF check does for forms), or one of CSRF_TRUSTED_ORIGINS.

The site's own origin is the handshake's Host header (which must be in ALLOWED_HOSTS) with
https when the connection is TLS, a trusted proxy says so (SECURE_PROXY_SSL_HEADER), or the
site redirects every page to https (SECURE_SSL_REDIRECT); http otherwise.
"""

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

DEFAULT_PORTS = {"http": 80, "https": 443}


def _headers(scope: dict) -> dict[bytes, str]:
    return {name: value.decode("latin-1") for name, value in scope.get("headers") or []}


def _parts(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) origin, or None when it is not one."""
    try:
        parsed = urlsplit(origin)
        port = parsed.port
    except ValueError:
        return None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
        return None
    if parsed.path or parsed.query or parsed.fragment or parsed.username:
        return None
    return parsed.scheme, parsed.hostname, port or DEFAULT_PORTS[parsed.scheme]


def site_scheme(scope: dict, headers: dict[bytes, str]) -> str:
    if scope.get("scheme") in ("wss", "https") or settings.SECURE_SSL_REDIRECT:
        return "https"
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        header = name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1")
        if headers.get(header, "").split(",")[0].strip() == secure_value:
            return "https"
    return "http"


def site_origin(scope: dict, headers: dict[bytes, str]) -> tuple[str, str, int] | None:
    host = headers.get(b"host", "")
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return _parts(f"{site_scheme(scope, headers)}://{host}")


def is_trusted(origin: tuple[str, str, int]) -> bool:
    """In CSRF_TRUSTED_ORIGINS: the same scheme and port, and host (`*.` for subdomains)."""
    scheme, host, port = origin
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        wildcard = "://*." in trusted
        pattern = _parts(trusted.replace("://*.", "://", 1))
        if pattern is None or (pattern[0], pattern[2]) != (scheme, port):
            continue
        if is_same_domain(host, "." + pattern[1]) if wildcard else host == pattern[1]:
            return True
    return False


def origin_allowed(scope: dict) -> bool:
    headers = _headers(scope)
    origin = _parts(headers.get(b"origin", ""))
    if origin is None:
        return False
    return origin == site_origin(scope, headers) or is_trusted(origin)


class SiteOriginValidator:
    """ASGI middleware: a websocket from another origin is refused at the handshake."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
