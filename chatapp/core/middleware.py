import logging
import time

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction
from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware
from django.conf import settings
from django.middleware.gzip import GZipMiddleware
from django.utils.cache import add_never_cache_headers
from django.utils.deprecation import MiddlewareMixin

from chatapp.core import views
from chatapp.core.logs import loggable_path, new_request_id, request_id_var

access_log = logging.getLogger("chatapp.access")
PROBES = {"/healthz": views.healthz, "/readyz": views.readyz, "/metrics": views.metrics}

# Scripts and styles only from our own origin: no inline script, no remote images.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class NeverCacheMiddleware(MiddlewareMixin):
    """Pages are kept by no cache unless their view says otherwise: they carry a user's data,
    which a shared proxy, or the browser's Back button after sign-out, would show again.
    Inside WhiteNoise, so static files keep their own caching."""

    def process_response(self, request, response):
        if not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response


class RequestIdMiddleware:
    """Gives each request an id (the proxy's X-Request-ID or a new one) for logs and the response.

    Also writes one access-log line per response: method, path without query, status, duration.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        token, started = self._begin(request)
        try:
            response = self.get_response(request)
            return self._finish(request, response, started)
        finally:
            request_id_var.reset(token)

    async def _acall(self, request):
        token, started = self._begin(request)
        try:
            response = await self.get_response(request)
            return self._finish(request, response, started)
        finally:
            request_id_var.reset(token)

    def _begin(self, request):
        request.request_id = new_request_id(request.headers.get("X-Request-ID"))
        return request_id_var.set(request.request_id), time.perf_counter()

    def _finish(self, request, response, started: float):
        response["X-Request-ID"] = request.request_id
        level = logging.DEBUG if request.path_info in PROBES else logging.INFO
        path = loggable_path(request)
        access_log.log(
            level,
            "%s %s %s",
            request.method,
            path,
            response.status_code,
            extra={
                "method": request.method,
                "path": path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response


class ProbeMiddleware:
    """Answers /healthz, /readyz and /metrics before host checks and the HTTPS redirect.

    Container health checks and Prometheus reach each replica by its internal address over plain
    HTTP; these responses build no URLs, so the Host header does not matter to them.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        view = PROBES.get(request.path_info)
        if self.is_async:
            return view(request) if view else self.get_response(request)
        return async_to_sync(view)(request) if view else self.get_response(request)


class WebsocketRequestIdMiddleware:
    """ASGI middleware: each websocket connection gets a request id for everything it logs
    (scope["request_id"] too), and access-log lines when it opens and closes."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"")
        request_id = new_request_id(incoming.decode("latin-1"))
        token = request_id_var.set(request_id)
        started, path, closed = time.perf_counter(), scope.get("path", ""), {"code": None}

        async def watched_send(message):
            if message["type"] == "websocket.accept":
                access_log.info("WS %s open", path, extra={"method": "WS", "path": path})
            elif message["type"] == "websocket.close":
                closed["code"] = message.get("code", 1000)
            await send(message)

        async def watched_receive():
            message = await receive()
            if message["type"] == "websocket.disconnect" and closed["code"] is None:
                closed["code"] = message.get("code", 1005)
            return message

        try:
            await self.app(dict(scope, request_id=request_id), watched_receive, watched_send)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            extra = {"method": "WS", "path": path, "status": closed["code"]}
            access_log.info(
                "WS %s closed %s", path, closed["code"], extra={**extra, "duration_ms": duration_ms}
            )
            request_id_var.reset(token)


class WebsocketSessionMiddleware(SessionMiddleware):
    """Channels' SessionMiddleware for websockets, without its wrapper around `send`.

    The wrapper saves a changed session and sets its cookie on `http.response.start`, which a
    websocket never sends; on each of its other messages it only reads the session's state,
    and at a frame per token that was 6% of a streaming server's CPU (bench/README.md). A
    consumer that changes the session saves it itself (Channels' `login()` says so); ours only
    read it.
    """

    async def __call__(self, scope, receive, send):
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, send)


def websocket_auth_stack(inner):
    """Channels' AuthMiddlewareStack, with WebsocketSessionMiddleware for its SessionMiddleware."""
    return CookieMiddleware(WebsocketSessionMiddleware(AuthMiddleware(inner)))


class StaticGZipMiddleware(GZipMiddleware):
    """Gzip the static files WhiteNoise serves straight from static/ (no collectstatic, so no
    compressed copies beside them). Static files only: pages carry CSRF tokens (BREACH)."""

    def process_request(self, request):
        # A gzipped file's ETag goes out weakened (W/"..."). If-None-Match compares weakly
        # (RFC 9110), WhiteNoise exactly: without this no such file would ever answer 304.
        etag = request.META.get("HTTP_IF_NONE_MATCH", "")
        if etag.startswith("W/") and self._is_static(request):
            request.META["HTTP_IF_NONE_MATCH"] = etag.removeprefix("W/")

    def process_response(self, request, response):
        if not self._is_static(request):
            return response
        return super().process_response(request, response)

    def _is_static(self, request) -> bool:
        return request.path.startswith("/" + settings.STATIC_URL.lstrip("/"))
