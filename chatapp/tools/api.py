"""A team's tool servers as JSON: every member reads (never a token); owners and admins
change them (members 403); everyone else 404. The conventions are chatapp.core.api's.

Adding or changing a server's URL or token connects to it to list its tools: a server that
cannot be reached is stored as down, with the reason, and answered 201/200 all the same; a URL
the network guard refuses is a 400 (`url_refused`) and stores nothing.
"""

from datetime import datetime
from typing import Annotated

from annotated_types import Len
from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse
from ninja import Path, Router, Schema, Status
from pydantic import Field, StringConstraints

from chatapp.core.api import (
    MAX_ID,
    ApiError,
    RequestBody,
    Storable,
    check_if_match,
    documented_body,
    etag,
    precondition_failed,
    read_body,
    responses,
)
from chatapp.teams import services
from chatapp.teams.models import Membership
from chatapp.tools import actions
from chatapp.tools.models import DEFAULT_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT, ToolServer

router = Router(tags=["tools"])

TeamId = Annotated[int, Path(ge=1, le=MAX_ID)]
ServerId = Annotated[int, Path(ge=1, le=MAX_ID)]
ServerName = Annotated[str, StringConstraints(min_length=1, max_length=40), Storable]
ServerUrl = Annotated[str, StringConstraints(min_length=1, max_length=500), Storable]
Token = Annotated[str, StringConstraints(max_length=2000), Storable]
Timeout = Annotated[int, Field(ge=MIN_TIMEOUT, le=MAX_TIMEOUT)]
ToolName = Annotated[str, StringConstraints(min_length=1, max_length=128), Storable]


class ToolOut(Schema):
    name: str
    description: str
    enabled: bool
    ask_first: bool
    read_only: bool
    needs_approval: bool
    input_schema: dict


class ServerOut(Schema):
    id: int
    name: str
    url: str
    has_token: bool
    timeout: int
    status: str
    last_error: str
    refreshed_at: datetime | None
    tools: list[ToolOut]


class ServerList(Schema):
    results: list[ServerOut]
    can_manage: bool


class ServerCreate(RequestBody):
    name: ServerName
    url: ServerUrl
    token: Token = ""
    timeout: Timeout = DEFAULT_TIMEOUT


class ToolChoice(RequestBody):
    enabled: bool = None  # type: ignore[assignment]  # may be left out, not null
    ask_first: bool = None  # type: ignore[assignment]


class ServerChange(RequestBody):
    """The fields to change; one left out keeps its value. token "" removes the token."""

    name: ServerName = None  # type: ignore[assignment]
    url: ServerUrl = None  # type: ignore[assignment]
    token: Token = None  # type: ignore[assignment]
    timeout: Timeout = None  # type: ignore[assignment]
    tools: Annotated[dict[ToolName, ToolChoice], Len(max_length=500)] = None  # type: ignore[assignment]


def server_json(server: ToolServer) -> dict:
    return {
        "id": server.pk,
        "name": server.name,
        "url": server.url,
        "has_token": server.has_token,
        "timeout": server.timeout,
        "status": server.status,
        "last_error": server.last_error,
        "refreshed_at": server.refreshed_at,
        "tools": [
            {
                "name": tool.name,
                "description": tool.description,
                "enabled": tool.enabled,
                "ask_first": tool.ask_first,
                "read_only": tool.read_only,
                "needs_approval": tool.needs_approval,
                "input_schema": tool.input_schema,
            }
            for tool in server.tools.all()
        ],
    }


def _server(membership: Membership, server_id: int) -> ToolServer:
    server = (
        ToolServer.objects.filter(pk=server_id, team=membership.team).select_related("team").first()
    )
    if server is None:
        raise ApiError(404, "not_found", "No such tool server in this team.")
    return server


def _refused(error: actions.ToolActionError) -> ApiError:
    status = 404 if error.code == "not_found" else 400
    return ApiError(status, error.code, error.message, error.field)


@router.get("/teams/{int:team_id}/tool-servers/", response=responses({200: ServerList}))
def server_list(request: HttpRequest, team_id: TeamId):
    membership = services.get_team_access(request.user, team_id)
    servers = ToolServer.objects.for_team(team_id).prefetch_related("tools")
    return {
        "results": [server_json(server) for server in servers],
        "can_manage": services.can(membership, "manage_tools"),
    }


@router.post(
    "/teams/{int:team_id}/tool-servers/",
    response=responses({201: ServerOut}),
    openapi_extra=documented_body(ServerCreate),
)
def server_create(request: HttpRequest, team_id: TeamId, response: HttpResponse):
    membership = services.get_team_access(request.user, team_id, "manage_tools")
    body = read_body(request, ServerCreate)
    try:
        server = async_to_sync(actions.add_server)(
            request.user, membership.team, **body.model_dump()
        )
    except actions.ToolActionError as error:
        raise _refused(error) from None
    response["ETag"] = etag(server.etag_state())
    return Status(201, server_json(server))


@router.get(
    "/teams/{int:team_id}/tool-servers/{int:server_id}/", response=responses({200: ServerOut})
)
def server_read(request: HttpRequest, team_id: TeamId, server_id: ServerId, response: HttpResponse):
    """The server; its ETag, sent back as If-Match, makes a change of it conditional."""
    membership = services.get_team_access(request.user, team_id)
    server = _server(membership, server_id)
    response["ETag"] = etag(server.etag_state())
    return server_json(server)


@router.patch(
    "/teams/{int:team_id}/tool-servers/{int:server_id}/",
    response=responses({200: ServerOut}),
    openapi_extra=documented_body(ServerChange),
)
def server_change(
    request: HttpRequest, team_id: TeamId, server_id: ServerId, response: HttpResponse
):
    """With If-Match: only while the server is as that ETag read it (else 412)."""
    membership = services.get_team_access(request.user, team_id, "manage_tools")
    server = _server(membership, server_id)
    conditional = check_if_match(request, server.etag_state())
    # Conditional: checked again holding the server's row, as the change is saved.
    seen = server.etag_state() if conditional else ""
    changes = read_body(request, ServerChange).model_dump(exclude_unset=True)
    choices = changes.pop("tools", None) or {}
    picked = {name: {k: v for k, v in c.items() if v is not None} for name, c in choices.items()}
    try:
        actions.check_tool_names(server, picked)  # before any change: a bad body changes nothing
        if changes:  # the settings and the choices saved together
            server = async_to_sync(actions.change_server)(
                request.user, server, **changes, etag=seen, choices=picked
            )
        elif picked:
            actions.set_tool_choices(request.user, server, picked, etag=seen)
    except actions.ToolActionError as error:
        if conditional and error.code == "changed":
            raise precondition_failed() from None
        raise _refused(error) from None
    response["ETag"] = etag(server.etag_state())
    return server_json(server)


@router.delete(
    "/teams/{int:team_id}/tool-servers/{int:server_id}/", response=responses({204: None})
)
def server_delete(request: HttpRequest, team_id: TeamId, server_id: ServerId):
    membership = services.get_team_access(request.user, team_id, "manage_tools")
    server = _server(membership, server_id)
    check_if_match(request, server.etag_state())
    actions.delete_server(request.user, server)
    return HttpResponse(status=204)


@router.post(
    "/teams/{int:team_id}/tool-servers/{int:server_id}/refresh/",
    response=responses({200: ServerOut}),
)
def server_refresh(
    request: HttpRequest, team_id: TeamId, server_id: ServerId, response: HttpResponse
):
    """Connect again and store the server's tool list (or that it is down, and why)."""
    membership = services.get_team_access(request.user, team_id, "manage_tools")
    server = _server(membership, server_id)
    try:
        async_to_sync(actions.refresh_server)(request.user, server)
    except actions.ToolActionError as error:
        raise _refused(error) from None
    response["ETag"] = etag(server.etag_state())
    return server_json(server)
