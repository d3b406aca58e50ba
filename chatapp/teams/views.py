"""Team pages: list, create and switch teams; members and invitations; prompts; model policy;
provider; usage; the safety review queue; audit. Every team id goes through
services.get_team_access (404 / 403)."""

import json
import logging
import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, F
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chatapp.core.dates import month_start, next_month
from chatapp.core.group_map import manages, parse_group_map
from chatapp.core.http import streaming_response
from chatapp.core.links import absolute_url
from chatapp.core.permissions import require_site_admin
from chatapp.core.redirects import safe_next
from chatapp.teams import actions, api_keys, audit_trail, services
from chatapp.teams.forms import (
    InviteForm,
    JsonSchemaForm,
    PolicyForm,
    PromptForm,
    ProviderForm,
    RoleForm,
    StartersForm,
    TeamForm,
    answer_format_value,
    patterns_text,
    policy_form_options,
)
from chatapp.teams.models import (
    MANAGER_ROLES,
    AuditAction,
    AuditEvent,
    Invitation,
    JsonSchema,
    Membership,
    Role,
    SafetyDecision,
    SafetyFlag,
    SystemPrompt,
)
from chatapp.teams.policy import team_policy, team_provider, team_rules
from chatapp.teams.quota import tokens_used
from chatapp.teams.usage import (
    CHARGEBACK_FIELDS,
    chargeback_rows,
    month_report,
    months_to_choose,
    parse_month,
    safety_counts,
    storage_use,
)

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
    form = TeamForm(request.POST or None, user=request.user)
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
        # The last owner cannot leave (actions.leave_team): say so rather than offer the button.
        "last_owner": membership.role == Role.OWNER
        and not team.memberships.filter(role=Role.OWNER).exclude(pk=membership.pk).exists(),
        # Whom its groups join to the team, single sign-on joins again at their next sign-in.
        "joined_by_sign_in": settings.OIDC_ENABLED
        and team.personal_owner_id is None
        and manages(parse_group_map(settings.OIDC_GROUP_MAP), team.name),
        "error": error,
    }
    return _render(request, "teams/detail.html", membership, "overview", status, **context)


# Members and invitations.

MEMBERS_PER_PAGE = 100
# Open invitations (up to TEAM_MAX_PENDING_INVITATIONS) are listed below, a page at a time.
INVITATIONS_PER_PAGE = 50


@login_required
@require_GET
def members(request, team_id: int):
    return _members(request, services.get_team_access(request.user, team_id))


def _members(request, membership, invite_form=None, error: str = "", status: int = 200):
    team = membership.team
    everyone = team.memberships.select_related("user").order_by("user__username", "pk")
    page = Paginator(everyone, MEMBERS_PER_PAGE).get_page(request.GET.get("page"))
    people = list(page.object_list)
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
        "page": page,
        "invitations": [],
        "invite_form": invite_form or InviteForm(),
        "roles": Role.choices,
        "error": error,
    }
    invitation_page = 1
    if manages:
        # The keys of the people on this page, in the same order.
        shown = [person.user_id for person in people]
        context["member_keys"] = api_keys.member_keys(team, membership.role).filter(
            user_id__in=shown
        )
        # Invitations made by anyone else (who left, lost the role...) let nobody in.
        managers = team.memberships.filter(role__in=MANAGER_ROLES, user__is_active=True)
        context["inviters"] = set(managers.values_list("user_id", flat=True))
        # Those asking to join (to confirm) first, then the newest.
        pending = (
            team.invitations.filter(accepted_at__isnull=True, expires_at__gt=timezone.now())
            .select_related("invited_by", "claimed_by")
            .order_by(F("claimed_at").desc(nulls_last=True), "-created_at", "-pk")
        )
        invitations = Paginator(pending, INVITATIONS_PER_PAGE).get_page(
            request.GET.get("invitations")
        )
        invitation_page = invitations.number
        context["invitations"] = invitations.object_list
        context["invitation_page"] = invitations
    # Each list's links keep the other's page, and changes made on a later page come back to
    # it (_back_to_members).
    context["members_query"] = _pages_query(invitations=invitation_page)
    context["invitations_query"] = _pages_query(page=page.number)
    both = _pages_query(page=page.number, invitations=invitation_page)
    context["on_page"] = f"?{both[:-1]}" if both else ""
    response = _render(request, "teams/members.html", membership, "members", status, **context)
    add_never_cache_headers(response)  # invitation links let anyone join: kept in no cache
    return response


def _pages_query(**numbers: int) -> str:
    """`name=number&` for each list shown past its first page, for links that keep them."""
    return "".join(f"{name}={number}&" for name, number in numbers.items() if number > 1)


def _back_to_members(request, team_id: int):
    """The Members page the change was made on (its ?page= and ?invitations=, when numbers)."""
    url = reverse("teams:members", args=[team_id])
    kept = [
        f"{name}={request.GET[name]}"
        for name in ("page", "invitations")
        if re.fullmatch(r"[0-9]{1,9}", request.GET.get(name, ""))
    ]
    return redirect(f"{url}?{'&'.join(kept)}" if kept else url)


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
    return _back_to_members(request, team_id)


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
    return _back_to_members(request, team_id)


@login_required
@require_POST
def member_key_revoke(request, team_id: int, key_id: int):
    """An owner or admin revokes a member's personal API key (never seeing its secret)."""
    membership = services.get_team_access(request.user, team_id, "manage_members")
    key = api_keys.member_key(membership.team, membership.role, key_id)
    if key is None:
        raise Http404("No such key among this team's members")
    actions.revoke_api_key(request.user, key, membership.team)
    messages.success(request, f"Revoked {key.user.get_username()}'s key {key.name}.")
    return _back_to_members(request, team_id)


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
    link = absolute_url(request, reverse("teams:accept", args=[invitation.token]))
    if not invitation.email or not settings.EMAIL_URL:
        messages.success(request, "Invitation created: copy its link below and send it.")
        return
    try:
        emailed = actions.email_invitation(invitation, link)
    except OSError as exc:  # smtplib errors are OSErrors too
        log.warning("Could not email an invitation for team %s: %s", invitation.team_id, exc)
        messages.warning(request, "The email could not be sent: copy the link below instead.")
        return
    if not emailed:
        messages.info(
            request,
            f"{invitation.email} was invited a few minutes ago, so this invitation was not"
            " emailed: copy its link below and send it.",
        )
        return
    messages.success(request, f"Invitation emailed to {invitation.email}.")


@login_required
@require_POST
def invitation_revoke(request, team_id: int, invitation_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_members")
    invitation = get_object_or_404(
        Invitation, pk=invitation_id, team=membership.team, accepted_at__isnull=True
    )
    try:
        actions.revoke_invitation(request.user, invitation)
    except actions.ActionError as error:
        return _members(request, membership, error=error.message, status=400)
    messages.success(request, "Invitation revoked.")
    return _back_to_members(request, team_id)


@require_http_methods(GET_POST)
def accept_invitation(request, token: str):
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    invitation = get_object_or_404(Invitation.objects.select_related("team"), token=token)
    if request.method == "GET":
        return _invitation_page(request, invitation)
    try:
        membership, joined = actions.accept_invitation(request.user, token)
    except actions.AddressUnverified:
        return _verify_address(request, invitation)
    except actions.InvitationError as error:
        return _invitation_page(request, invitation, error)
    return _joined(request, membership, joined)


@require_http_methods(GET_POST)
def accept_confirmed(request, token: str, signature: str):
    """The link mailed to an invitation's address: proves the account reads that mail."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    invitation = get_object_or_404(Invitation.objects.select_related("team"), token=token)
    if not actions.address_verified(invitation, request.user, signature):
        error = actions.InvitationError(
            "This confirmation link is not valid for this account (or has expired): open it"
            " signed in as the account that asked to join, or accept the invitation again.",
            403,
        )
        return _invitation_page(request, invitation, error)
    if request.method == "GET":
        return _invitation_page(request, invitation, confirm_url=request.path)
    try:
        membership, joined = actions.accept_invitation(request.user, token, address_verified=True)
    except actions.InvitationError as error:
        return _invitation_page(request, invitation, error)
    return _joined(request, membership, joined)


def _joined(request, membership: Membership, joined: bool):
    services.switch_team(request, membership.team)
    if joined:
        messages.success(request, f"Welcome to {membership.team.name}.")
    else:
        messages.info(request, f"You already belong to {membership.team.name}.")
    return redirect("teams:detail", membership.team_id)


def _verify_address(request, invitation: Invitation):
    """Mail a confirmation link to the invitation's address; without email, ask an admin."""
    if not settings.EMAIL_URL:
        actions.claim_invitation(request.user, invitation)
        return _invitation_page(request, invitation, pending="claimed")
    signature = actions.address_signature(invitation, request.user)
    path = reverse("teams:accept_confirmed", args=[invitation.token, signature])
    try:
        mailed = actions.email_address_confirmation(
            invitation, request.user, absolute_url(request, path)
        )
    except OSError as exc:  # smtplib errors are OSErrors too
        log.warning(
            "Could not email an address confirmation for team %s: %s", invitation.team_id, exc
        )
        error = actions.InvitationError("The email could not be sent: try again later.", 503)
        return _invitation_page(request, invitation, error)
    return _invitation_page(request, invitation, pending="mailed" if mailed else "mailed_before")


@login_required
@require_POST
def invitation_confirm(request, team_id: int, invitation_id: int):
    """A team admin confirms the account that asked to join with an address-bound invitation."""
    membership = services.get_team_access(request.user, team_id, "manage_members")
    invitation = get_object_or_404(
        Invitation.objects.select_related("team", "claimed_by"),
        pk=invitation_id,
        team=membership.team,
        accepted_at__isnull=True,
    )
    try:
        joined = actions.confirm_claim(request.user, invitation)
    except actions.InvitationError as error:
        return _members(request, membership, error=error.message, status=error.status)
    messages.success(request, f"{joined.user.get_username()} joined the team.")
    return _back_to_members(request, team_id)


def _invitation_page(
    request, invitation: Invitation, error=None, pending: str = "", confirm_url: str = ""
):
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
        "pending": pending,
        "confirm_url": confirm_url,
        "claimed_by_me": invitation.claimed_by_id == request.user.pk,
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
            except actions.LimitReached as error:
                form.add_error(None, error.message)
            except actions.ActionError as error:
                form.add_error("name", error.message)
            else:
                messages.success(request, f"Added the prompt {form.cleaned_data['name']}.")
                return redirect("teams:prompts", team_id)
    return _prompts_page(request, membership, form, _starters_form(team))


def _moved_prompt(request) -> dict:
    """The prompt just moved (`?moved=<id>-up|down`), whose move button takes the focus again, so
    a keyboard user can go on moving it; anything else names none."""
    prompt_id, _, direction = request.GET.get("moved", "").partition("-")
    if not prompt_id.isascii() or not prompt_id.isdigit() or direction not in ("up", "down"):
        return {}
    return {"moved_id": int(prompt_id), "moved_direction": direction}


def _starters_form(team, data=None) -> StartersForm:
    initial = {"suggestions": "\n".join(team_policy(team).starter_suggestions or [])}
    return StartersForm(data, initial=initial)


def _prompts_page(request, membership: Membership, form, starters_form):
    context = {
        "prompts": SystemPrompt.objects.for_team(membership.team).select_related("json_schema"),
        "form": form,
        "starters_form": starters_form,
        **_moved_prompt(request),
    }
    status = 400 if form.errors or starters_form.errors else 200
    return _render(request, "teams/prompts.html", membership, "prompts", status, **context)


@login_required
@require_POST
def starters(request, team_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_prompts")
    team = membership.team
    form = _starters_form(team, request.POST)
    if not form.is_valid():
        return _prompts_page(request, membership, PromptForm(team=team), form)
    actions.save_starters(request.user, team, form.cleaned_data["suggestions"])
    messages.success(request, "Saved the starter suggestions.")
    return redirect("teams:prompts", team_id)


def _prompt_target(membership: Membership, prompt_id: int) -> SystemPrompt:
    return get_object_or_404(SystemPrompt, pk=prompt_id, team=membership.team)


def seen_now(request, state: str):
    """The page's data as sent, with the state the page has now shown (a save goes through)."""
    data = request.POST.copy()
    data["seen"] = state
    return data


# A prompt keeps every earlier text (up to 20,000 characters each): its page shows a page of them.
PROMPT_VERSIONS_PER_PAGE = 20


@login_required
@require_http_methods(GET_POST)
def prompt_edit(request, team_id: int, prompt_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_prompts")
    prompt = _prompt_target(membership, prompt_id)
    initial = {f: getattr(prompt, f) for f in ("name", "content", "is_default", "locked")}
    initial["answer_format"] = answer_format_value(prompt.response_format, prompt.json_schema_id)
    initial["seen"] = prompt.state()
    form = PromptForm(request.POST or None, initial=initial, team=membership.team, prompt=prompt)
    if request.method == "POST" and form.is_valid():
        try:
            actions.save_prompt(request.user, membership.team, prompt, **form.cleaned_data)
        except actions.Gone as error:  # the text typed stays on the page, to be kept
            form.add_error(None, error.message)
        except actions.Changed as error:  # seen now: saving the page again saves it
            prompt.refresh_from_db()
            form.data = seen_now(request, prompt.state())
            form.add_error(None, error.message)
        except actions.ActionError as error:
            form.add_error("name", error.message)
        else:
            messages.success(request, f"Saved the prompt {form.cleaned_data['name']}.")
            return redirect("teams:prompts", team_id)
    versions = prompt.versions.select_related("edited_by")
    page = Paginator(versions, PROMPT_VERSIONS_PER_PAGE).get_page(request.GET.get("page"))
    context = {"prompt": prompt, "form": form, "versions": page.object_list, "page": page}
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
    try:
        actions.move_prompt(request.user, prompt, offsets[request.POST["direction"]])
    except actions.Gone as error:
        messages.error(request, error.message)
        return redirect("teams:prompts", team_id)
    moved = f"{prompt.pk}-{request.POST['direction']}"
    return redirect(f"{reverse('teams:prompts', args=[team_id])}?moved={moved}")


# Model policy and provider.


@login_required
@require_http_methods(GET_POST)
def policy(request, team_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_policy")
    team = membership.team
    stored, options = team_policy(team), policy_form_options(team)
    initial = {name: getattr(stored, name) for name in actions.POLICY_FIELDS}
    if options["own_server"]:
        initial["allowed_models"] = "\n".join(stored.allowed_models or [])
    initial["data_patterns"] = patterns_text(stored.data_patterns or [])
    initial["seen"] = actions.policy_state(stored)
    is_owner = membership.role == Role.OWNER
    form = PolicyForm(request.POST or None, initial=initial, is_owner=is_owner, **options)
    if request.method == "POST" and form.is_valid():
        try:
            actions.set_policy(
                request.user, team, form.policy_values(), seen=form.cleaned_data["seen"]
            )
        except actions.Changed as error:  # seen now: saving the page again saves it
            form.data = seen_now(request, actions.policy_state(team_policy(team)))
            form.add_error(None, error.message)
        else:
            messages.success(request, "Saved the model policy.")
            return redirect("teams:policy", team_id)
    context = {
        "form": form,
        "own_server": options["own_server"],
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
    policy = team_policy(team)
    budget = policy.monthly_token_budget
    # What each person has left means something only for the month under way.
    member_limit = policy.member_monthly_token_budget if month == month_start(today) else None
    used_this_month = team_left = None
    if budget:
        used_this_month = tokens_used(team, today.replace(day=1))
        # Nobody can use more than the team's budget has left, whatever their own limit says.
        team_left = max(0, budget - used_this_month)
    context = {
        "report": month_report(team, month, member_limit, team_left),
        "months": months_to_choose(team, today, month),
        "budget": budget,
        "member_limit": member_limit,
        "team_left": team_left,
        "resets": next_month(today),
        "used_this_month": used_this_month,
        "storage": storage_use(team),
        "safety": safety_counts(team, month),
    }
    return _render(request, "teams/usage.html", membership, "usage", **context)


@login_required
@require_GET
def usage_csv(request, team_id: int):
    """The month's usage by person, model and API key, as CSV for chargeback."""
    membership = services.get_team_access(request.user, team_id, "view_usage")
    team = membership.team
    month = parse_month(request.GET.get("month"), timezone.now().date())
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    filename = f"usage-team{team.pk}-{month:%Y-%m}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.write("\ufeff")  # else Excel reads the names in the computer's legacy code page
    writer = audit_trail.spreadsheet_writer(response, CHARGEBACK_FIELDS)
    writer.writeheader()
    for row in chargeback_rows(team, month):
        writer.writerow({k: audit_trail.spreadsheet_safe(v) for k, v in row.items()})
    return response


# The safety review queue: what Llama Guard flagged, for owners and admins.

REVIEW_FILTERS = {"pending": {"decision": ""}, "all": {}}


@login_required
@require_GET
def safety_queue(request, team_id: int):
    membership = services.get_team_access(request.user, team_id, "review_safety")
    show = request.GET.get("show") if request.GET.get("show") in REVIEW_FILTERS else "pending"
    flags = SafetyFlag.objects.filter(team=membership.team, **REVIEW_FILTERS[show])
    page = Paginator(flags.order_by("-id").values_list("pk", flat=True), 50).get_page(
        request.GET.get("page")
    )
    # The page's flags are picked by id first: the messages and people are then read for
    # its own flags, not for every flag on the pages before it.
    on_page = (
        SafetyFlag.objects.filter(pk__in=list(page.object_list))
        .select_related("author", "decided_by", "message", "message__parent")
        .prefetch_related("message__attachments")
        .order_by("-id")
    )
    context = {"page": page, "flags": on_page, "show": show, "decisions": SafetyDecision}
    return _render(request, "teams/safety.html", membership, "safety", **context)


@login_required
@require_POST
def safety_review(request, team_id: int, flag_id: int):
    membership = services.get_team_access(request.user, team_id, "review_safety")
    flag = get_object_or_404(SafetyFlag, pk=flag_id, team=membership.team)
    try:
        actions.review_flag(request.user, flag, request.POST.get("decision", ""))
    except actions.ActionError as error:
        return HttpResponseBadRequest(error.message)
    messages.success(request, f"Marked as {SafetyDecision(flag.decision).label.lower()}.")
    back = f"{reverse('teams:safety', args=[team_id])}?show={_show(request)}"
    return redirect(back + _page(request))


def _show(request) -> str:
    show = request.POST.get("show", "")
    return show if show in REVIEW_FILTERS else "pending"


def _page(request) -> str:
    """The queue's page the decision was made on, for the way back (the first: nothing)."""
    page = request.POST.get("page", "")
    return f"&page={page}" if re.fullmatch(r"[1-9][0-9]{0,5}", page) and page != "1" else ""


@login_required
@require_GET
def audit(request, team_id: int):
    membership = services.get_team_access(request.user, team_id, "view_audit")
    # Paged by event, as the site's trail is: a page number would count the team's events.
    events = AuditEvent.objects.filter(team=membership.team)
    page = audit_trail.event_page(request.GET.get("before"), request.GET.get("after"), events)
    return _render(request, "teams/audit.html", membership, "audit", page=page)


# The whole site's audit trail, for site admins (404 for everyone else).


@login_required
@require_http_methods(GET_POST)
def site_audit(request):
    require_site_admin(request.user)
    if request.method == "POST":
        return _export_audit(request)
    if request.GET.get("check") == "all":
        checked, problem = audit_trail.verify_chain()
        partial = False
    else:
        # Only the newest events are read: the page says so, and offers the whole chain.
        checked, problem, partial = audit_trail.verify_recent(audit_trail.RECENT_EVENTS)
    context = {
        "page": audit_trail.event_page(request.GET.get("before"), request.GET.get("after")),
        "checked": checked,
        "problem": problem,
        "partial": partial,
        "window": audit_trail.RECENT_EVENTS,
        "formats": audit_trail.EXPORTERS,
    }
    return render(request, "teams/site_audit.html", context)


def _export_audit(request):
    format = request.POST.get("format", "")
    if format not in audit_trail.EXPORTERS:
        return HttpResponseBadRequest("Choose an export format: csv or json.")
    actions.audit(
        None,
        request.user,
        AuditAction.AUDIT_EXPORT,
        f"{request.user.get_username()} exported the audit trail as {format}",
        format=format,
    )
    content_type = "text/csv" if format == "csv" else "application/json"
    response = streaming_response(
        request, audit_trail.export_chunks(format), f"{content_type}; charset=utf-8"
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{format}"'
    return response


# Saved JSON schemas (answer formats).


@login_required
@require_http_methods(GET_POST)
def json_schemas(request, team_id: int):
    membership = services.get_team_access(request.user, team_id)
    team = membership.team
    form = JsonSchemaForm(request.POST or None, team=team)
    if request.method == "POST":
        services.require(membership, "manage_prompts")
        if form.is_valid():
            try:
                actions.save_json_schema(request.user, team, **form.cleaned_data)
            except actions.ActionError as error:
                form.add_error(None, error.message)
            else:
                messages.success(request, f"Added the schema {form.cleaned_data['name']}.")
                return redirect("teams:json_schemas", team_id)
    context = {
        "schemas": [
            (saved, json.dumps(saved.schema, indent=2)) for saved in team.json_schemas.all()
        ],
        "form": form,
    }
    status = 400 if form.errors else 200
    return _render(request, "teams/json_schemas.html", membership, "schemas", status, **context)


def _schema_target(membership: Membership, schema_id: int) -> JsonSchema:
    return get_object_or_404(JsonSchema, pk=schema_id, team=membership.team)


@login_required
@require_http_methods(GET_POST)
def json_schema_edit(request, team_id: int, schema_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_prompts")
    saved = _schema_target(membership, schema_id)
    initial = {"name": saved.name, "schema": json.dumps(saved.schema, indent=2)}
    initial["seen"] = saved.state()
    form = JsonSchemaForm(request.POST or None, initial=initial, team=saved.team, saved=saved)
    if request.method == "POST" and form.is_valid():
        try:
            actions.save_json_schema(request.user, saved.team, saved, **form.cleaned_data)
        except actions.Changed as error:  # seen now: saving the page again saves it
            saved.refresh_from_db()
            form.data = seen_now(request, saved.state())
            form.add_error(None, error.message)
        except actions.ActionError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, f"Saved the schema {form.cleaned_data['name']}.")
            return redirect("teams:json_schemas", team_id)
    status = 400 if form.errors else 200
    context = {"saved": saved, "form": form}
    return _render(request, "teams/json_schema_edit.html", membership, "schemas", status, **context)


@login_required
@require_POST
def json_schema_delete(request, team_id: int, schema_id: int):
    membership = services.get_team_access(request.user, team_id, "manage_prompts")
    saved = _schema_target(membership, schema_id)
    actions.delete_json_schema(request.user, saved)
    messages.success(request, f"Deleted the schema {saved.name}.")
    return redirect("teams:json_schemas", team_id)
