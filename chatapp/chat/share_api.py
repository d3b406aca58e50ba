"""Shares in the JSON API: share one of your conversations inside its team, list and revoke
your shares. Reading a share is its page, /s/<token>/ (chatapp.chat.views). The conventions
(errors, auth, CSRF, 404s) are chatapp.core.api's."""

from datetime import datetime
from typing import Annotated, Literal

from annotated_types import Len
from django.http import HttpRequest, HttpResponse
from ninja import Field, Path, Query, Router, Schema, Status
from pydantic import conint

from chatapp.chat.actions import sharing
from chatapp.chat.errors import ChatError
from chatapp.chat.models import Share, get_conversation_for_user
from chatapp.core.api import (
    MAX_ID,
    MAX_PAGE,
    ApiError,
    RequestBody,
    blank_is,
    documented_body,
    one_page,
    read_body,
    responses,
)
from chatapp.core.requests import AuthenticatedHttpRequest

router = Router(tags=["shares"])

ConversationId = Annotated[int, Path(ge=1, le=MAX_ID)]
ShareId = Annotated[int, Path(ge=1, le=MAX_ID)]
UserId = conint(ge=1, le=MAX_ID)
MAX_MEMBERS = 500


class ShareCreate(RequestBody):
    audience: Literal["team", "members"]
    members: Annotated[list[UserId], Len(max_length=MAX_MEMBERS)] = []  # type: ignore[valid-type]


class ShareOut(Schema):
    id: int
    url: str = Field(description="The share's page, for the people it names.")
    conversation_id: int
    team_id: int
    title: str
    audience: str
    members: list[int] = Field(description="With audience `members`: who may read it.")
    messages: int = Field(description="How many messages the snapshot holds.")
    created_at: datetime


class ShareList(Schema):
    results: list[ShareOut]
    next: str | None = Field(description="The address of the next page, or null.")


def share_json(share: Share, message_count: int) -> dict:
    return {
        "id": share.pk,
        "url": f"/s/{share.token}/",
        "conversation_id": share.conversation_id,
        "team_id": share.team_id,
        "title": share.title,
        "audience": share.audience,
        "members": sorted(user.pk for user in share.members.all()),
        "messages": message_count,
        "created_at": share.created_at,
    }


def own_share(user, share_id: int) -> Share:
    share = Share.objects.filter(owner=user, pk=share_id).first()
    if share is None:
        raise ApiError(404, "not_found", "No such share of yours.")
    return share


@router.post(
    "/conversations/{int:conversation_id}/shares/",
    response=responses({201: ShareOut}),
    openapi_extra=documented_body(ShareCreate),
)
def share_create(request: HttpRequest, conversation_id: ConversationId):
    conversation = get_conversation_for_user(request.user, conversation_id, ["team"])
    body = read_body(request, ShareCreate)
    try:
        share = sharing.share_conversation(request.user, conversation, body.audience, body.members)
    except ChatError as error:
        status = {"forbidden": 403, "not_found": 404}.get(error.code, 400)
        raise ApiError(status, error.code, error.message, error.field) from None
    return Status(201, share_json(share, len(share.messages)))


@router.get("/shares/", response=responses({200: ShareList}))
def share_list(
    request: AuthenticatedHttpRequest,
    page: Annotated[int, blank_is(1)] = Query(1, ge=1, le=MAX_PAGE),
):
    """Your shares, newest first, a page at a time."""
    size = sharing.SHARES_PER_PAGE
    start = (page - 1) * size
    shares = Share.objects.filter(owner=request.user).listed().prefetch_related("members")
    # One row more than shown tells whether a next page exists.
    rows, following = one_page(
        request, list(shares[start : start + size + 1]), size, {"page": page + 1}
    )
    return {
        "results": [share_json(share, share.message_count) for share in rows],
        "next": following,
    }


@router.delete("/shares/{int:share_id}/", response=responses({204: None}))
def share_revoke(request: HttpRequest, share_id: ShareId):
    try:
        sharing.revoke_share(request.user, own_share(request.user, share_id))
    except ChatError as error:  # revoked meanwhile, by another request
        raise ApiError(404, error.code, error.message) from None
    return HttpResponse(status=204)
