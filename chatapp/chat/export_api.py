"""`GET /api/me/export/`: download all my data as one ZIP archive (chatapp.chat.data_export).
The conventions (errors, auth) are chatapp.core.api's."""

from django.http import FileResponse
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
    archive = data_export.build_archive(request.user)
    # Streamed from the temporary file, closed (and so removed) when the response ends.
    return FileResponse(
        archive,
        as_attachment=True,
        filename=data_export.archive_name(request.user),
        content_type="application/zip",
    )
