"""Team pages: list, create and switch teams; members and invitations; prompts; model policy;
provider; usage; audit. Every team id goes through services.get_team_access (404 / 403)."""

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chatapp.accounts.views import safe_next
from chatapp.teams import actions, services
from chatapp.teams.forms import (
    InviteForm,
    PolicyForm,
    PromptForm,
    ProviderForm,
    RoleForm,
    TeamForm,
)
from chatapp.teams.models import AuditEvent, Invitation, Membership, Role, SystemPrompt
from chatapp.teams.policy import site_models, team_policy, team_provider, team_rules, tokens_used
from chatapp.teams.usage import month_report, months_with_usage, parse_month

log = logging.getLogger(__name__)

GET_POST = ["GET", "POST"]


def _render(request, template: str, membership: Membership, section: str, status=200, **context):
    context.update(
        team=membership.team,
        membership=membership,
        can=services.permissions_of(membership),
        section=section,
    )
    return render(request, template, context, status=status)


# Team list, create, switch, leave.


@login_required
@require_http_methods(GET_POST)
def team_list(request):
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        team = actions.create_team(request.user, form.cleaned_data["name"])
        services.switch_team(request, team)
        messages.success(request, f"Created {team.name}; it is now your current team.")
        return redirect("teams:detail", team.pk)
    current = services.current_team(request)
    memberships = (
        Membership.objects.filter(user=request.user)
        .select_related("team")
        .annotate(member_count=Count("team__memberships"))
        .order_by("team__name", "team_id")
    )
    context = {"memberships": memberships, "current": current, "form": form}
    return render(request, "teams/list.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def switch(request, team_id: int):
    membership = services.get_team_access(request.user, team_id)
    services.switch_team(request, membership.team)
    messages.success(request, f"Your current team is now {membership.team.name}.")
    return redirect(safe_next(request, reverse("teams:list")))


@login_required
@require_POST
def leave(request, team_id: int):
    membership = services.get_team_access(request.user, team_id)
    try:
        actions.leave_team(membership)
    except actions.ActionError as error:
        return _overview(request, membership, error=error.message, status=400)
    messages.success(request, f"You left {membership.team.name}.")
    return redirect("teams:list")


@login_required
@require_GET
def detail(request, team_id: int):
    return _overview(request, services.get_team_access(request.user, team_id))


def _overview(request, membership: Membership, error: str = "", status: int = 200):
    team = membership.team
    rules = team_rules(team)
    provider = team_provider(team)
    context = {
        "rules": rules,
        "own_server": provider is not None and provider.uses_own_server,
        "member_count": team.memberships.count(),
        "prompts": SystemPrompt.objects.for_team(team),
        "is_current": request.session.get(services.SESSION_TEAM_KEY) == team.pk,
        "error": error,
    }
    return _render(request, "teams/detail.html", membership, "overview", status, **context)


# Members and invitations.


@login_required
@require_GET
def members(request, team_id: int):
    return _members(request, services.get_team_access(request.user, team_id))


def _members(request, membership, invite_form=None, error: str = "", status: int = 200):
    team = membership.team
    people = list(team.memberships.select_related("user").order_by("user__username"))
    manages = services.can(membership, "manage_members")
    for person in people:
        # Owners act on anyone; admins on admins and members; nobody here on themselves.
        person.editable = (
            manages
            and person.pk != membership.pk
            and (person.role != Role.OWNER or membership.role == Role.OWNER)
        )
    context = {
        "members": people,
        "invitations": [],
        "invite_form": invite_form or InviteForm(),
        "roles": RoleForm.base_fields["role"].choices,
        "error": error,
    }
    if manages:
        context["invitations"] = team.invitations.filter(
            accepted_at__isnull=True, expires_at__gt=timezone.now()
        ).select_related("invited_by")
    return _render(request, "teams/members.html", membership, "members", status, **context)


def _member_target(membership: Membership, membership_id: int) -> Membership:
    return get_object_or_404(
        Membership.objects.select_related("user"), pk=membership_id, team=membership.team
    )


def _member_change_refused(request, membership, error: actions.ActionError):
    """403 when the role may not make the change; otherwise the members page saying why."""
    if error.forbidden:
        raise PermissionDenied(error.message)
    return _members(request, membership, error=error.message, status=400)


@login_required
@require_POST
def member_role(request, team_id: int, membership_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_members")
    target = _member_target(membership, membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _members(request, membership, error="Choose a valid role.", status=400)
    try:
        actions.change_role(membership, target, form.cleaned_data["role"])
    except actions.ActionError as error:
        return _member_change_refused(request, membership, error)
    messages.success(request, f"{target.user.get_username()} is now {form.cleaned_data['role']}.")
    return redirect("teams:members", team_id)


@login_required
@require_POST
def member_remove(request, team_id: int, membership_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_members")
    target = _member_target(membership, membership_id)
    try:
        actions.remove_member(membership, target)
    except actions.ActionError as error:
        return _member_change_refused(request, membership, error)
    messages.success(request, f"Removed {target.user.get_username()} from the team.")
    return redirect("teams:members", team_id)


@login_required
@require_POST
def invite(request, team_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_members")
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _members(request, membership, invite_form=form, status=400)
    try:
        invitation = actions.invite(
            request.user,
            membership.team,
            email=form.cleaned_data["email"] or "",
            role=form.cleaned_data["role"],
            days=form.cleaned_data["days"] or 7,
        )
    except actions.ActionError as error:
        return _members(request, membership, invite_form=form, error=error.message, status=400)
    _send_invitation(request, invitation)
    return redirect("teams:members", team_id)


def _send_invitation(request, invitation: Invitation) -> None:
    link = request.build_absolute_uri(reverse("teams:accept", args=[invitation.token]))
    if not invitation.email or not settings.EMAIL_URL:
        messages.success(request, "Invitation created: copy its link below and send it.")
        return
    try:
        actions.email_invitation(invitation, link)
    except OSError as exc:  # smtplib errors are OSErrors too
        log.warning("Could not email an invitation for team %s: %s", invitation.team_id, exc)
        messages.warning(request, "The email could not be sent: copy the link below instead.")
        return
    messages.success(request, f"Invitation emailed to {invitation.email}.")


@login_required
@require_POST
def invitation_revoke(request, team_id: int, invitation_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_members")
    invitation = get_object_or_404(
        Invitation, pk=invitation_id, team=membership.team, accepted_at__isnull=True
    )
    actions.revoke_invitation(request.user, invitation)
    messages.success(request, "Invitation revoked.")
    return redirect("teams:members", team_id)


@require_http_methods(GET_POST)
def accept_invitation(request, token: str):
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    invitation = get_object_or_404(Invitation.objects.select_related("team"), token=token)
    if request.method == "GET":
        return _invitation_page(request, invitation)
    try:
        membership, joined = actions.accept_invitation(request.user, token)
    except actions.InvitationError as error:
        return _invitation_page(request, invitation, error)
    services.switch_team(request, membership.team)
    if joined:
        messages.success(request, f"Welcome to {membership.team.name}.")
    else:
        messages.info(request, f"You already belong to {membership.team.name}.")
    return redirect("teams:detail", membership.team_id)


def _invitation_page(request, invitation: Invitation, error=None):
    member = Membership.objects.filter(team=invitation.team, user=request.user).exists()
    if error is None and not member:
        try:
            actions.check_usable(invitation, request.user)
        except actions.InvitationError as problem:
            error = problem
    context = {
        "invitation": invitation,
        "error": error.message if error else "",
        "already_member": member,
    }
    return render(request, "teams/accept.html", context, status=error.status if error else 200)


# System prompts.


@login_required
@require_http_methods(GET_POST)
def prompts(request, team_id: int):
    membership = services.get_team_access(request.user, team_id)
    team = membership.team
    form = PromptForm(request.POST or None, team=team)
    if request.method == "POST":
        services.require(membership, "manage_prompts")
        if form.is_valid():
            try:
                actions.save_prompt(request.user, team, **form.cleaned_data)
            except actions.ActionError as error:
                form.add_error("name", error.message)
            else:
                messages.success(request, f"Added the prompt {form.cleaned_data['name']}.")
                return redirect("teams:prompts", team_id)
    context = {"prompts": SystemPrompt.objects.for_team(team), "form": form}
    status = 400 if form.errors else 200
    return _render(request, "teams/prompts.html", membership, "prompts", status, **context)


def _prompt_target(membership: Membership, prompt_id: int) -> SystemPrompt:
    return get_object_or_404(SystemPrompt, pk=prompt_id, team=membership.team)


@login_required
@require_http_methods(GET_POST)
def prompt_edit(request, team_id: int, prompt_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_prompts")
    prompt = _prompt_target(membership, prompt_id)
    initial = {f: getattr(prompt, f) for f in ("name", "content", "is_default", "locked")}
    form = PromptForm(request.POST or None, initial=initial, team=membership.team, prompt=prompt)
    if request.method == "POST" and form.is_valid():
        try:
            actions.save_prompt(request.user, membership.team, prompt, **form.cleaned_data)
        except actions.ActionError as error:
            form.add_error("name", error.message)
        else:
            messages.success(request, f"Saved the prompt {form.cleaned_data['name']}.")
            return redirect("teams:prompts", team_id)
    context = {
        "prompt": prompt,
        "form": form,
        "versions": prompt.versions.select_related("edited_by"),
    }
    status = 400 if form.errors else 200
    return _render(request, "teams/prompt_edit.html", membership, "prompts", status, **context)


@login_required
@require_POST
def prompt_delete(request, team_id: int, prompt_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_prompts")
    prompt = _prompt_target(membership, prompt_id)
    actions.delete_prompt(request.user, prompt)
    messages.success(request, f"Deleted the prompt {prompt.name}.")
    return redirect("teams:prompts", team_id)


@login_required
@require_POST
def prompt_move(request, team_id: int, prompt_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_prompts")
    prompt = _prompt_target(membership, prompt_id)
    offsets = {"up": -1, "down": 1}
    if request.POST.get("direction") not in offsets:
        return HttpResponseBadRequest("Move a prompt up or down.")
    actions.move_prompt(request.user, prompt, offsets[request.POST["direction"]])
    return redirect("teams:prompts", team_id)


# Model policy and provider.


@login_required
@require_http_methods(GET_POST)
def policy(request, team_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_policy")
    team = membership.team
    stored, provider = team_policy(team), team_provider(team)
    own_server = provider is not None and provider.uses_own_server
    protocol = provider.protocol if own_server else settings.LLAMA_API_PROTOCOL
    initial = {name: getattr(stored, name) for name in actions.POLICY_FIELDS}
    if own_server:
        initial["allowed_models"] = "\n".join(stored.allowed_models or [])
    form = PolicyForm(
        request.POST or None, initial=initial, own_server=own_server, protocol=protocol
    )
    if request.method == "POST" and form.is_valid():
        values = dict(form.cleaned_data, default_model=form.cleaned_data["default_model"] or "")
        actions.set_policy(request.user, team, values)
        messages.success(request, "Saved the model policy.")
        return redirect("teams:policy", team_id)
    context = {
        "form": form,
        "own_server": own_server,
        "site_models": site_models(),
        "rules": team_rules(team),
    }
    status = 400 if form.errors else 200
    return _render(request, "teams/policy.html", membership, "policy", status, **context)


@login_required
@require_http_methods(GET_POST)
def provider(request, team_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_provider")
    team = membership.team
    stored = team_provider(team)
    initial = {"base_url": stored.base_url, "protocol": stored.protocol} if stored else {}
    form = ProviderForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            actions.set_provider(request.user, team, **form.cleaned_data)
        except actions.ActionError as error:
            form.add_error("api_key", error.message)
        else:
            messages.success(request, "Saved the provider settings.")
            return redirect("teams:provider", team_id)
    context = {
        "form": form,
        "stored": stored,
        "site_url": settings.LLAMA_API_BASE_URL,
        "private_allowed": settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS,
    }
    status = 400 if form.errors else 200
    return _render(request, "teams/provider.html", membership, "provider", status, **context)


# Usage and audit.


@login_required
@require_GET
def usage(request, team_id: int):
    membership = services.get_team_access(request.user, team_id, "view_usage")
    team = membership.team
    today = timezone.now().date()
    month = parse_month(request.GET.get("month"), today)
    budget = team_policy(team).monthly_token_budget
    context = {
        "report": month_report(team, month),
        "months": months_with_usage(team, today),
        "budget": budget,
        "used_this_month": tokens_used(team, today.replace(day=1)) if budget else None,
    }
    return _render(request, "teams/usage.html", membership, "usage", **context)


@login_required
@require_GET
def audit(request, team_id: int):
    membership = services.get_team_access(request.user, team_id, "view_audit")
    events = AuditEvent.objects.filter(team=membership.team).select_related("actor")
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return _render(request, "teams/audit.html", membership, "audit", page=page)
