"""`GET /api/me/export/`: download all my data as one ZIP archive (chatapp.chat.data_export).
The conventions (errors, auth) are chatapp.core.api's."""

from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header
from ninja import Router

from chatapp.chat import data_export
from chatapp.core.api import responses
from chatapp.core.requests import AuthenticatedHttpRequest

router = Router(tags=["account"])

ARCHIVE = {
    200: {
        "description": "A ZIP archive of the user's conversations, files and settings",
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.get("/me/export/", response=responses({200: None}), openapi_extra={"responses": ARCHIVE})
def export_my_data(request: AuthenticatedHttpRequest):
    chunks = data_export.archive_chunks(request.user)
    response = StreamingHttpResponse(
        in_request_thread(chunks) if isinstance(request, ASGIRequest) else chunks,
        content_type="application/zip",
    )
    response["Content-Disposition"] = content_disposition_header(
        True, data_export.archive_name(request.user)
    )
    return response


async def in_request_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Served by ASGI, a synchronous iterator would be read whole before the first byte is
    sent; each chunk is built instead in the request's thread, where its ORM calls belong."""
    step = sync_to_async(_next_chunk, thread_sensitive=True)
    while (chunk := await step(chunks)) is not None:
        if chunk:
            yield chunk


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)
