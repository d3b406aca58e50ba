"""`GET /api/me/export/`: download all my data as one ZIP archive (chatapp.chat.data_export).
The conventions (errors, auth) are chatapp.core.api's."""

from django.utils.http import content_disposition_header
from ninja import Router

from chatapp.chat import data_export
from chatapp.core.api import responses
from chatapp.core.http import streaming_response
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
    response = streaming_response(request, chunks, content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(
        True, data_export.archive_name(request.user)
    )
    return response
