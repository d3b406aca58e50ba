"""The server refuses a request body larger than any address takes before it is stored.

daphne (through Twisted) keeps a request's whole body, in memory or in a temporary file, before
the application sees any of it, and sets no limit of its own. Behind the compose stack's nginx
the proxy refuses larger bodies; a server reached directly (`make run`, the single container)
would spool a body of any size to disk, from anyone, signed in or not. `refuse_large_bodies`
has daphne's requests count their body as it arrives: one declared, or grown, past
`largest_body()` is answered 413 at once (in the shape of its address's API), what was held of
it is dropped, and the rest the client still sends is read and thrown away until it stops or
LINGER_SECONDS pass (closing at once would reset the connection under a client still sending,
which loses the answer).
"""

import json
import math
from typing import Any

from django.conf import settings

# An upload's multipart form around its file: the boundaries, the part headers, the team field.
MULTIPART_ROOM = 64 * 1024
LINGER_SECONDS = 30.0


def v1_body_limit() -> int:
    """The most a /v1 request body may hold: Django's limit for any body, plus a chat
    message's attachments as base64 (the images a request may carry inline)."""
    base64_images = 4 * math.ceil(settings.UPLOAD_MAX_MESSAGE_BYTES / 3)
    return (settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0) + base64_images


def largest_body() -> int:
    """The most any address takes: /v1's limit or an uploaded file with its form."""
    return max(v1_body_limit(), settings.UPLOAD_MAX_FILE_BYTES + MULTIPART_ROOM)


def too_large_response(path: bytes, limit: int) -> bytes:
    """The whole HTTP response refusing a body over `limit`, for the address `path`."""
    message = f"The request body is over {limit / 1024**2:.1f} MB, the most this server takes."
    error: dict[str, Any] = {"code": "request_too_large", "message": message}
    if path.startswith(b"/v1/"):  # OpenAI's error shape
        error.update(type="invalid_request_error", param=None)
    if path.startswith((b"/v1/", b"/api/")):
        body, kind = json.dumps({"error": error}).encode(), b"application/json"
    else:
        body, kind = message.encode() + b"\n", b"text/plain; charset=utf-8"
    head = (
        b"HTTP/1.1 413 Content Too Large\r\n"
        b"Content-Type: " + kind + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Cache-Control: no-store\r\n"
        b"Connection: close\r\n\r\n"
    )
    return head + body


def refuse_large_bodies() -> None:
    """Have daphne's HTTP requests refuse a body past `largest_body()` as it arrives."""
    from daphne.http_protocol import WebRequest

    got_length = WebRequest.gotLength
    handle_content_chunk = WebRequest.handleContentChunk
    request_received = WebRequest.requestReceived

    def refuse(request: Any, limit: int) -> None:
        from twisted.internet import reactor  # daphne's, installed by then

        installed: Any = reactor  # Twisted types the module as an interface
        request.body_refused = True
        if request.content is not None:  # what was spooled of it goes now
            request.content.close()
            request.content = None
        channel = request.channel
        transport = channel.transport
        transport.write(too_large_response(getattr(channel, "_path", b""), limit))
        transport.loseWriteConnection()  # the answer, then the end of what the server sends
        channel.dataReceived = _drop  # the rest of the body is read and dropped, not parsed
        installed.callLater(LINGER_SECONDS, transport.loseConnection)

    def gotLength(self: Any, length: int | None) -> None:
        # No limit for an app without Django's settings (the benchmark's bare relay).
        self.body_bytes = 0
        self.body_limit = largest_body() if settings.configured else math.inf
        if length is not None and length > self.body_limit:
            refuse(self, self.body_limit)
        else:
            got_length(self, length)

    def handleContentChunk(self: Any, data: bytes) -> None:
        if getattr(self, "body_refused", False):
            return
        self.body_bytes += len(data)
        if self.body_bytes > self.body_limit:  # a chunked body, or more than it declared
            refuse(self, self.body_limit)
        else:
            handle_content_chunk(self, data)

    def requestReceived(self: Any, command: bytes, path: bytes, version: bytes) -> None:
        if not getattr(self, "body_refused", False):  # answered already: no application runs
            request_received(self, command, path, version)

    WebRequest.gotLength = gotLength
    WebRequest.handleContentChunk = handleContentChunk
    WebRequest.requestReceived = requestReceived


def _drop(data: bytes) -> None:
    pass
