"""Operational endpoints: /healthz (liveness), /readyz (readiness), /metrics (Prometheus),
and /favicon.ico.

ProbeMiddleware serves the first three ahead of host validation and the HTTPS redirect.
"""

import hmac
import ipaddress
import os

from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from chatapp.core import metrics as _metrics  # noqa: F401  (registers the chat metrics)
from chatapp.core import stopping
from chatapp.core.health import (
    OK,
    cached_upstream_models,
    check_channel_layer,
    check_database,
)


@require_GET
def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """Pages without our icon link (the admin) get the logo rather than a 404."""
    return HttpResponseRedirect(staticfiles_storage.url("img/logo.svg"))


@require_GET
@never_cache
async def healthz(request: HttpRequest) -> JsonResponse:
    """This process can serve: the database and the channel layer answer."""
    if stopping.is_stopping():
        return _stopping()
    checks = {"database": await check_database(), "channel_layer": await check_channel_layer()}
    return _report(checks)


@require_GET
@never_cache
async def readyz(request: HttpRequest) -> JsonResponse:
    """Ready for users: as /healthz, and the configured Llama API lists its models (those of
    LLAMA_DEFAULT_MODEL and LLAMA_MODELS it lacks are named, without failing).

    The upstream part is only for callers that may read /metrics: anyone else would make the
    site spend its key (and learn about its provider) by asking. It is probed at most every
    UPSTREAM_CACHE_SECONDS per process.
    """
    if stopping.is_stopping():
        return _stopping()
    checks = {"database": await check_database(), "channel_layer": await check_channel_layer()}
    if metrics_refusal(request) is not None:
        return _report(checks)
    checks["upstream"], model_ids = await cached_upstream_models()
    extra = {}
    if checks["upstream"] == OK:
        # Informational: a missing model breaks the chats on it, not the whole site.
        offered = settings.LLAMA_DEFAULT_MODEL in model_ids
        extra["default_model"] = OK if offered else "not offered by the upstream"
        missing = [
            model
            for model in settings.LLAMA_MODELS
            if model not in model_ids and model != settings.LLAMA_DEFAULT_MODEL
        ]
        extra["models"] = f"not offered by the upstream: {', '.join(missing)}" if missing else OK
    return _report(checks, **extra)


def _stopping() -> JsonResponse:
    """It still accepts connections while it ends its answers: nobody new should come."""
    return JsonResponse({"status": "stopping"}, status=503)


def _report(checks: dict[str, str], **extra: str) -> JsonResponse:
    healthy = all(value == OK for value in checks.values())
    body = {"status": OK if healthy else "error", **checks, **extra}
    return JsonResponse(body, status=200 if healthy else 503)


@require_GET
@never_cache
async def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for a scraper holding METRICS_TOKEN or on an allowed network."""
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


def _registry() -> CollectorRegistry:
    """This process's metrics, or the sum over every server process when several share a port."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the request may read metrics; every configured guard must pass."""
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        # Off unless an operator chose who may read them.
        return HttpResponse("Not found\n", status=404)
    if networks and not _client_in(networks, request.META.get("REMOTE_ADDR", "")):
        return HttpResponse("This address may not read metrics.\n", status=403)
    if token and not _bearer_matches(request, token):
        response = HttpResponse("A valid bearer token is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return None


def _client_in(networks: list, address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:10.0.0.5 is 10.0.0.5
    return any(ip in network for network in networks)


def _bearer_matches(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
