"""ASGI entry point: HTTP through Django, websockets through Channels (in the documented order)."""

import gc
import os
from importlib import import_module

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatapp.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from chatapp.chat import reaper  # noqa: E402
from chatapp.core.http import HttpHandler  # noqa: E402
from chatapp.core.middleware import WebsocketRequestIdMiddleware, websocket_auth_stack  # noqa: E402
from chatapp.core.origin import SiteOriginValidator  # noqa: E402
from chatapp.llm.network import tls_context  # noqa: E402
from chatapp.routing import websocket_urlpatterns  # noqa: E402


class StartReaper:
    """From a process's first request on (health checks included), it looks for answers
    a dead process left streaming, without waiting for a websocket."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            reaper.ensure_running()
        return await self.app(scope, receive, send)


router = ProtocolTypeRouter(
    {
        "http": HttpHandler(),
        # Outermost: the connection's request id is set before anything else logs. In place of
        # AllowedHostsOriginValidator, which compares host names only: scheme and port count too.
        "websocket": WebsocketRequestIdMiddleware(
            SiteOriginValidator(
                websocket_auth_stack(URLRouter(websocket_urlpatterns))  # type: ignore[arg-type]
            )
        ),
    }
)
application = StartReaper(router)

# Made now rather than on first use: the URLconf (every view, the JSON API and its schemas),
# which would keep the process's first request waiting half a second, and the TLS context of
# the upstream connections, whose CA bundle would hold up the first answer and every stream
# of the process for 60 ms (bench/README.md).
import_module(settings.ROOT_URLCONF)
tls_context()

# What is loaded by now (Django, the apps, their modules) lives as long as the process. Kept
# out of the collector's full passes, which otherwise walk all of it while every stream of
# the process waits: 148 ms in one pass at 200 answers, 42 ms with it frozen (bench/README.md).
gc.freeze()
