from urllib.parse import urlsplit

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme


def safe_next(request: HttpRequest, default: str = "/") -> str:
    """The `next` the request asks for, if it is an address on this site (a path, or a whole
    URL of this host); else `default`. A bare word is neither: `redirect` would look it up as
    a view's name."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    # Checked second: the check above refuses what urlsplit cannot read.
    if allowed and (target.startswith("/") or urlsplit(target).scheme):
        return target
    return default
