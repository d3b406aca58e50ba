"""Django's ASGI handler, closing a request's database connections as the request ends, and
streaming responses whose chunks are made in that request's thread.

Django runs each request's synchronous code (middleware, views, the ORM calls of async views)
in a thread made for that request alone (asgiref's `ThreadSensitiveContext`), gone when the
request ends. A connection kept open there for `CONN_MAX_AGE` can never serve another request;
it stayed open until a full pass of the garbage collector found the dead thread's connection
wrapper, which the server's collector thresholds make rare (`chatapp.core.server`): a
PostgreSQL session, or a SQLite file, for every request served until then. So `HttpHandler`
closes them as the request finishes, in the request's own thread. The websockets' database
thread lives as long as the process and keeps its connection for `DB_CONN_MAX_AGE` seconds.
"""

from collections.abc import AsyncIterator, Iterator
from contextlib import suppress

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.core.signals import request_finished
from django.db import connections
from django.http import HttpRequest, StreamingHttpResponse


class HttpHandler(ASGIHandler):
    """Sends `request_finished` with itself as the sender, which `close_request_connections`
    listens for; Django's other handlers (the test client's) keep Django's behaviour."""

    async def listen_for_disconnect(self, receive):
        """Return, rather than raise RequestAborted, once the client has gone.

        Django's `handle` cancels the view's task when this task ends either way, and ignores
        the exception. But daphne, as the server stops, cancels `handle` itself mid-wait, and
        then nobody retrieves this task's exception: asyncio logged "Task exception was never
        retrieved ... RequestAborted" for every response still streaming (a /v1/ answer). Any
        other exception (an ASGI message out of place) is raised as Django raises it.
        """
        with suppress(RequestAborted):
            await super().listen_for_disconnect(receive)


def close_request_connections(**kwargs) -> None:
    for connection in connections.all(initialized_only=True):
        connection.close()


request_finished.connect(close_request_connections, sender=HttpHandler)


def streaming_response(
    request: HttpRequest, chunks: Iterator[bytes], content_type: str
) -> StreamingHttpResponse:
    """A response sent as `chunks` are made, which may read the database as they go."""
    body = in_request_thread(chunks) if isinstance(request, ASGIRequest) else chunks
    return StreamingHttpResponse(body, content_type=content_type)


async def in_request_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Served by ASGI, a synchronous iterator would be read whole before the first byte is
    sent; each chunk is built instead in the request's thread, where its ORM calls belong."""
    step = sync_to_async(_next_chunk, thread_sensitive=True)
    while (chunk := await step(chunks)) is not None:
        if chunk:
            yield chunk


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)
