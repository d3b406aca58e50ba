"""The team's Tools page: every member sees the servers and their tools; owners and admins
add, change, refresh and remove servers and choose which tools are on and which ask first."""

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from chatapp.core.words import counted
from chatapp.teams import services
from chatapp.teams.models import Membership
from chatapp.teams.network import private_allowed
from chatapp.tools import actions
from chatapp.tools.forms import ServerChangeForm, ServerForm
from chatapp.tools.models import MAX_OFFERED_TOOLS, ToolServer


def _server(membership: Membership, server_id: int) -> ToolServer:
    server = ToolServer.objects.filter(pk=server_id, team=membership.team).first()
    if server is None:
        raise Http404("No such tool server")
    return server


def _settings_form(server: ToolServer) -> ServerChangeForm:
    return ServerChangeForm(
        initial={
            "name": server.name,
            "url": server.url,
            "timeout": server.timeout,
            "seen": server.state(),
        },
        auto_id=f"server-{server.pk}-%s",
    )


def _page(request, membership: Membership, add_form=None, edited=None, status=200):
    """edited: a server's settings form that was refused, shown again with its errors."""
    servers = ToolServer.objects.for_team(membership.team_id).prefetch_related("tools")
    rows = [
        {
            "server": server,
            "form": edited
            if edited is not None and edited.initial.get("id") == server.pk
            else _settings_form(server),
        }
        for server in servers
    ]
    context = {
        "team": membership.team,
        "membership": membership,
        "can": services.permissions_of(membership),
        "section": "tools",
        "rows": rows,
        "enabled_count": sum(
            tool.enabled for server in servers if server.is_up for tool in server.tools.all()
        ),
        "max_offered": MAX_OFFERED_TOOLS,
        "add_form": add_form or ServerForm(auto_id="add-%s"),
        "private_allowed": private_allowed(),
    }
    return render(request, "tools/tools.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def tools_page(request, team_id: int):
    membership = services.get_team_access(request.user, team_id)
    if request.method == "GET":
        return _page(request, membership)
    services.require(membership, "manage_tools")
    form = ServerForm(request.POST, auto_id="add-%s")
    if form.is_valid():
        try:
            server = async_to_sync(actions.add_server)(
                request.user, membership.team, **form.cleaned_data
            )
        except actions.ToolActionError as error:
            form.add_error(error.field, error.message)
        else:
            _said(request, server, f"Added {server.name}")
            return redirect("tools:page", team_id)
    return _page(request, membership, add_form=form, status=400)


def _said(request, server: ToolServer, done: str) -> None:
    if server.is_up:
        messages.success(request, f"{done}: {counted(server.tools.count(), 'tool')}.")
    else:
        messages.warning(request, f"{done}, but it is down: {server.last_error}")


@login_required
@require_POST
def server_change(request, team_id: int, server_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_tools")
    server = _server(membership, server_id)
    form = ServerChangeForm(
        request.POST, initial={"id": server.pk}, auto_id=f"server-{server.pk}-%s"
    )
    if form.is_valid():
        try:
            server = async_to_sync(actions.change_server)(request.user, server, **form.changes())
        except actions.ToolActionError as error:
            if error.code == "changed":  # seen now: saving the form again saves it
                current = ToolServer.objects.filter(pk=server.pk).first()
                data = request.POST.copy()
                data["seen"] = current.state() if current else ""
                form.data = data
            form.add_error(error.field, error.message)
        else:
            _said(request, server, f"Saved {server.name}")
            return redirect("tools:page", team_id)
    return _page(request, membership, edited=form, status=400)


@login_required
@require_POST
def tool_choices(request, team_id: int, server_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_tools")
    server = _server(membership, server_id)
    choices = {
        tool.name: {
            "enabled": f"enabled-{tool.pk}" in request.POST,
            # A tool that changes things always asks: its box is shown ticked and fixed.
            "ask_first": f"ask_first-{tool.pk}" in request.POST
            if tool.read_only
            else tool.ask_first,
        }
        for tool in server.tools.all()
    }
    try:
        actions.set_tool_choices(request.user, server, choices)
    except actions.ToolActionError as error:  # a refresh changed the list meanwhile
        messages.error(request, error.message)
    else:
        messages.success(request, f"Saved the tools of {server.name}.")
    return redirect("tools:page", team_id)


@login_required
@require_POST
def server_refresh(request, team_id: int, server_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_tools")
    server = _server(membership, server_id)
    try:
        server = async_to_sync(actions.refresh_server)(request.user, server)
    except actions.ToolActionError as error:
        messages.error(request, error.message)
    else:
        _said(request, server, f"Refreshed {server.name}")
    return redirect("tools:page", team_id)


@login_required
@require_POST
def server_remove(request, team_id: int, server_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_tools")
    server = _server(membership, server_id)
    actions.delete_server(request.user, server)
    messages.success(request, f"Removed {server.name}.")
    return redirect("tools:page", team_id)
