"""Every URL the project serves (Django's admin aside), read from the URL resolver.

Sweeping tests build their URLs from here, so an endpoint added later is swept too, and an
id parameter they do not know makes them fail instead of being skipped.
"""

import re
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


@dataclass(frozen=True)
class Route:
    template: str  # "teams/<id:team_id>/members/"
    name: str | None

    @property
    def parameters(self) -> list[str]:
        return [m["name"] for m in PARAMETER.finditer(self.template)]

    def url(self, **values) -> str:
        return "/" + PARAMETER.sub(lambda m: str(values[m["name"]]), self.template)


def _walk(patterns, prefix: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield Route(prefix + str(pattern.pattern), pattern.name)


# Not a route: the JSON 404 for every unknown address under /api/ and /v1/, whatever the
# method (tests/api/test_odd_input.py).
NOT_ROUTES = {"unknown_api_url"}


def project_routes() -> list[Route]:
    """The project's own routes; the admin is Django's, staff-only and tested upstream."""
    return [
        r
        for r in _walk(get_resolver().url_patterns)
        if not r.template.startswith("admin/") and r.name not in NOT_ROUTES
    ]
