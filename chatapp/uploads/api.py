"""`POST /api/uploads/` stores a checked file; `GET|DELETE /api/uploads/<id>/` serve and remove it.

Files are never served from a public URL: every read goes through readable_by (404 otherwise).
The conventions (errors, auth, CSRF) are chatapp.core.api's.
"""

from typing import Annotated, Literal

from django.http import FileResponse, HttpRequest, HttpResponse
from ninja import Field, File, Form, Path, Router, Schema, Status, UploadedFile

from chatapp.core.api import MAX_ID, ApiError, responses
from chatapp.teams.services import current_team, named_team
from chatapp.uploads import actions
from chatapp.uploads.models import get_upload_for_user
from chatapp.uploads.validation import UploadRefused, check_size, clean_name

router = Router(tags=["uploads"])
FILE_FIELD = File(None, description="The image or document")
TEAM_FIELD = Form(
    None,
    ge=1,
    le=MAX_ID,
    description="One of your teams, the one of the chat the file is for (default: your"
    " current team)",
)
UploadId = Annotated[int, Path(ge=1, le=MAX_ID)]
FILE_ANSWER = {
    200: {
        "description": "The file itself: an image inline, a document as a download",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class UploadOut(Schema):
    id: int
    kind: Literal["image", "document"]
    name: str
    content_type: str
    bytes: int
    width: int | None
    height: int | None
    pages: int | None = Field(description="A PDF's page count")


@router.post("/uploads/", response=responses({201: UploadOut}))
def upload_create(
    request: HttpRequest, file: UploadedFile | None = FILE_FIELD, team: int | None = TEAM_FIELD
):
    if file is None:  # also a part whose headers are not UTF-8, which Django skips unread
        raise ApiError(
            400,
            "missing_file",
            "Send the file as multipart form data in the field 'file', its name in UTF-8.",
            "file",
        )
    if len(request.FILES.getlist("file")) > 1:
        raise ApiError(
            400, "invalid", "Send one file per request: each upload gets its own id.", "file"
        )
    into = current_team(request) if team is None else named_team(request.user, team, "team")
    try:
        actions.check_unsent(request.user)
        # Refused by its size as received: only one byte over the cap is read.
        check_size(clean_name(file.name or ""), file.size or 0, actions.limits())
        data = actions.read_limited(file, actions.limits().max_bytes)
        upload = actions.create_upload(request.user, into, file.name or "", data)
    except UploadRefused as refused:
        if refused.code == actions.NOT_IN_TEAM:  # removed from it while the file came in
            raise ApiError(404, refused.code, refused.message, "team") from None
        raise ApiError(400, refused.code, refused.message, "file") from None
    return Status(201, upload.summary())


@router.get(
    "/uploads/{int:upload_id}/",
    response=responses({200: None}),
    openapi_extra={"responses": FILE_ANSWER},
)
def upload_file(request: HttpRequest, upload_id: UploadId):
    upload = get_upload_for_user(request.user, upload_id)
    try:
        stored = upload.file.open("rb")
    except OSError:  # the row outlived its file (media not restored with the database...)
        raise ApiError(404, "not_found", f"{upload.name} is no longer stored.") from None
    # Images show in the page; documents always download, so no file is ever rendered as HTML.
    return FileResponse(
        stored,
        as_attachment=not upload.is_image,
        filename=upload.name,
        content_type=upload.content_type,
    )


@router.delete("/uploads/{int:upload_id}/", response=responses({204: None}))
def upload_delete(request: HttpRequest, upload_id: UploadId):
    upload = get_upload_for_user(request.user, upload_id)
    if upload.owner_id != request.user.pk:
        raise ApiError(403, "forbidden", "Only the person who uploaded a file can delete it.")
    try:
        actions.delete_upload(upload)
    except UploadRefused as error:  # a legal hold keeps it
        raise ApiError(409, error.code, error.message) from None
    return HttpResponse(status=204)
