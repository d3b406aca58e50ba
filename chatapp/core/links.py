"""The site's address at the start of the links people are sent or copy: mails, invitation
and share links, the OpenID Connect redirect."""

from django.conf import settings
from django.http import HttpRequest


def site_root(request: HttpRequest) -> str:
    """SITE_URL when set; else the scheme and Host of this request (a Host ALLOWED_HOSTS admits,
    which may be another name than the site's own)."""
    return settings.SITE_URL or f"{request.scheme}://{request.get_host()}"


def absolute_url(request: HttpRequest, path: str) -> str:
    return site_root(request) + path
