"""The OpenID Connect provider's metadata, read from its discovery document and kept an hour."""

import logging
import time
from urllib.parse import urlencode

import httpx
from django.conf import settings
from django.urls import reverse

from chatapp.core.links import absolute_url

log = logging.getLogger(__name__)

METADATA_TTL_SECONDS = 3600
REQUIRED = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint")
_cache: dict[str, tuple[float, dict]] = {}


class ProviderUnavailable(Exception):
    """The provider's discovery document could not be read or is not usable."""


def provider_metadata() -> dict:
    issuer = settings.OIDC_ISSUER_URL
    cached = _cache.get(issuer)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = httpx.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        metadata = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("OpenID Connect discovery at %s failed: %s", url, exc)
        raise ProviderUnavailable(f"could not read {url}") from None
    if not isinstance(metadata, dict):
        raise ProviderUnavailable(f"{url} answers no discovery document")
    missing = [
        name for name in REQUIRED if not (metadata.get(name) and isinstance(metadata[name], str))
    ]
    if missing:
        raise ProviderUnavailable(f"the discovery document lacks {', '.join(missing)}")
    # The issuer must name itself exactly as configured (OpenID Connect Discovery 1.0, 4.3).
    if metadata["issuer"].rstrip("/") != issuer:
        raise ProviderUnavailable(
            f"the provider calls itself {metadata['issuer']!r}, not {issuer!r}:"
            " check OIDC_ISSUER_URL"
        )
    _cache[issuer] = (time.monotonic() + METADATA_TTL_SECONDS, metadata)
    return metadata


def callback_url(request) -> str:
    """The redirect_uri, in the authorization request and the token request alike."""
    return absolute_url(request, reverse("oidc_authentication_callback"))


def end_session_url(request) -> str:
    """Where to end the provider's own session too (RP-initiated logout), or our login page.

    Sent to the browser, so it names the client, never carries the id token."""
    login = absolute_url(request, reverse("login"))
    try:
        endpoint = provider_metadata().get("end_session_endpoint")
    except ProviderUnavailable:
        endpoint = None
    # Sent to the browser as a link: a web address only, never another kind (javascript:).
    if not (isinstance(endpoint, str) and endpoint.startswith(("https://", "http://"))):
        return ""
    query = urlencode({"client_id": settings.OIDC_RP_CLIENT_ID, "post_logout_redirect_uri": login})
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
