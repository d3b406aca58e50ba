"""Checks behind /healthz and /readyz: each returns "ok" or a short reason, never raises."""

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from chatapp.core.layers import channel_closed, channel_layer
from chatapp.llm import shared_http_client

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 3.0
# One upstream probe per process per this many seconds, however often /readyz is asked.
UPSTREAM_CACHE_SECONDS = 30.0
OK = "ok"


@dataclass
class _Probe:
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task
    expires_at: float


_probes: dict[tuple[str, str], _Probe] = {}


async def check_database() -> str:
    try:
        await asyncio.wait_for(sync_to_async(_select_one)(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return _failed("database", "timeout")
    except Exception as exc:
        return _failed("database", "unreachable", exc)
    return OK


def _select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def check_channel_layer() -> str:
    """A message through the layer and back: proves Redis (or the in-memory layer) works."""
    try:
        await asyncio.wait_for(_layer_round_trip(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return _failed("channel_layer", "timeout")
    except Exception as exc:
        return _failed("channel_layer", "unreachable", exc)
    return OK


async def _layer_round_trip() -> None:
    layer = channel_layer()
    channel = await layer.new_channel("health.")  # type: ignore[call-arg]  # layers take a prefix
    try:
        await layer.send(channel, {"type": "health.ping"})
        message = await layer.receive(channel)
    finally:  # a ping that comes back after the check timed out is not kept
        channel_closed(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError("the channel layer returned another message")


async def cached_upstream_models() -> tuple[str, list[str]]:
    """upstream_models(), shared by every caller for UPSTREAM_CACHE_SECONDS."""
    key_digest = hashlib.sha256(settings.LLAMA_API_KEY.encode()).hexdigest()
    cache_key = (settings.LLAMA_API_BASE_URL, key_digest)
    probe = _probes.get(cache_key)
    if probe is not None and probe.task.done() and probe.expires_at > time.monotonic():
        return probe.task.result()
    loop = asyncio.get_running_loop()
    if probe is None or probe.task.done() or probe.loop is not loop:
        task = loop.create_task(upstream_models())
        probe = _probes[cache_key] = _Probe(loop, task, time.monotonic() + UPSTREAM_CACHE_SECONDS)
    # Shielded: a caller that goes away does not cancel the probe the others wait on.
    return await asyncio.shield(probe.task)


def forget_upstream_probes() -> None:
    _probes.clear()


async def upstream_models() -> tuple[str, list[str]]:
    """GET {LLAMA_API_BASE_URL}/models with the site key: ("ok", ids) or (reason, [])."""
    headers = {"Accept": "application/json"}
    if settings.LLAMA_API_KEY:
        headers["Authorization"] = f"Bearer {settings.LLAMA_API_KEY}"
    url = f"{settings.LLAMA_API_BASE_URL}/models"
    try:
        response = await shared_http_client().get(
            url, headers=headers, timeout=CHECK_TIMEOUT_SECONDS
        )
    except httpx.TimeoutException:
        return _failed("upstream", "timeout"), []
    except httpx.HTTPError as exc:
        return _failed("upstream", "unreachable", exc), []
    if response.status_code != 200:
        return _failed("upstream", f"HTTP {response.status_code}"), []
    try:
        ids = [item["id"] for item in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        return _failed("upstream", "not a model list"), []
    return OK, ids


def _failed(component: str, reason: str, exc: BaseException | None = None) -> str:
    # The exception's class only: messages from drivers can carry hosts and credentials.
    logger.warning(
        "health check failed: %s %s%s",
        component,
        reason,
        f" ({type(exc).__name__})" if exc else "",
        extra={"component": component, "reason": reason},
    )
    return reason
