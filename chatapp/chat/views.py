"""The chat page: `/` for a new conversation, `/c/<id>/` for one of the user's own."""

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chatapp.accounts import preferences
from chatapp.chat import admin_access
from chatapp.chat.actions import sharing
from chatapp.chat.actions.admin_access import grant_read_access
from chatapp.chat.errors import ChatError
from chatapp.chat.lookups import provider_page
from chatapp.chat.models import (
    Message,
    MessageRole,
    MessageStatus,
    Share,
    ShareAudience,
    get_conversation_for_user,
    get_share_for_viewer,
)
from chatapp.core.requests import AuthenticatedHttpRequest
from chatapp.core.text import one_line, storable
from chatapp.core.words import counted
from chatapp.teams import budgets, policy, providers
from chatapp.teams.actions import personal_team_to_create
from chatapp.teams.models import MANAGER_ROLES, JsonSchema, SystemPrompt, Team
from chatapp.teams.services import current_team, find_current_team, user_team
from chatapp.uploads.validation import accepted_suffixes

# How long team admins are shown that the provider refused the team's key.
KEY_WARNING_WINDOW = timedelta(days=1)


def default_model(user, team) -> str:
    """The model a new conversation will use; a stale stored choice falls back to the site's."""
    try:
        return preferences.effective_settings(user, team)["model"]
    except policy.PolicyError:
        return policy.site_defaults()["model"]


def system_prompt_choices(team) -> list[dict]:
    prompts = SystemPrompt.objects.for_team(team).only("id", "name", "is_default", "locked")
    return [
        {"id": p.id, "name": p.name, "is_default": p.is_default, "locked": p.locked}
        for p in prompts
    ]


def setting_limits(rules: policy.TeamRules) -> dict:
    """The ranges the settings panel checks before sending (the server checks them again)."""
    return {
        "models": [
            {"id": model, "maxTokens": rules.limits.max_tokens_for(model)} for model in rules.models
        ],
        "temperature": {"min": 0, "max": rules.limits.temperature},
        "topP": {"min": 0, "max": 1},
    }


def upload_limits() -> dict:
    """What the composer checks before uploading (the server checks it all again)."""
    return {
        "maxFiles": settings.UPLOAD_MAX_FILES_PER_MESSAGE,
        "maxFileBytes": settings.UPLOAD_MAX_FILE_BYTES,
        "maxMessageBytes": settings.UPLOAD_MAX_MESSAGE_BYTES,
        # The site's capability map: the model list does not say which models see images.
        "imageModels": list(settings.LLAMA_IMAGE_MODELS),
        "accept": ",".join(accepted_suffixes()),
    }


def refused_key(team) -> str | None:
    """Whose key the Llama API refused, "team" (its provider's) or "site" (LLAMA_API_KEY),
    when an answer in the team failed on it in the last day, since the key last changed, and
    no answer has been completed since; None otherwise."""
    provider = policy.team_provider(team)
    since = timezone.now() - KEY_WARNING_WINDOW
    if provider is not None and provider.updated_at > since:
        since = provider.updated_at
    failed = Message.objects.filter(error_code="auth_failed", updated_at__gte=since)
    in_team = failed.filter(conversation__team=team).order_by("-updated_at")
    last = in_team.values_list("pk", flat=True).first()
    if last is None:
        return None
    answered = Message.objects.filter(
        pk__gt=last,
        conversation__team=team,
        role=MessageRole.ASSISTANT,
        status=MessageStatus.COMPLETE,
    )
    if answered.exists():  # the key works again
        return None
    return "site" if provider is None else "team"


@require_GET
@login_required
def chat(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    conversation = None
    if conversation_id is not None:
        conversation = get_conversation_for_user(request.user, conversation_id)
    # A conversation shows in its own team (its list, prompts, models and limits, where its
    # next question goes), while the user is in it; anything else in the session's team.
    shown = user_team(request.user, conversation.team_id) if conversation else None
    team = shown or current_team(request)
    rules = policy.team_rules(team)
    kept_by = policy.team_policy(conversation.team) if conversation and not shown else rules.policy
    prompts = system_prompt_choices(team)
    is_team_admin = team.memberships.filter(user=request.user.pk, role__in=MANAGER_ROLES).exists()
    key_refused = refused_key(team) if is_team_admin else None
    teams = list(Team.objects.for_user(request.user).order_by("name", "id"))
    config = {
        "conversationId": conversation.pk if conversation else None,
        "userId": request.user.pk,  # names the composer's kept draft: one user's only
        "currentTeamId": team.pk,  # the sidebar lists this team's conversations
        # A conversation of any other team (one the user left) is shown to read only.
        "teamIds": [member_of.pk for member_of in teams],
        "socketPath": "/ws/chat/",
        "defaultModel": default_model(request.user, team),
        "maxContentBytes": settings.CHAT_MAX_CONTENT_BYTES,
        "systemPrompts": prompts,
        "limits": setting_limits(rules),
        "starters": rules.policy.starter_suggestions or [],
        "uploads": upload_limits(),
    }
    context = {
        "meters": budgets.meters(team, request.user, rules.policy),
        "budget_notices": budgets.notices_for_owner(request.user, team),
        "conversation": conversation,
        "current_team": team,
        "teams": teams,
        "former_team": conversation is not None and shown is None,
        # A hold keeps temporary chats too: the notice says so rather than that they go.
        "legal_hold": kept_by.legal_hold,
        "chat_config": config,
        "json_schemas": JsonSchema.objects.filter(team=team).only("pk", "name"),
        "is_team_admin": is_team_admin,
        # A locked default prompt applies to every new chat: there is nothing to choose.
        "locked_prompt": next((p for p in prompts if p["is_default"] and p["locked"]), None),
        "key_refused": key_refused,
        "key_refused_by": providers.provider_name(team) if key_refused else None,
        "key_page": provider_page(request.user, team.pk) if key_refused else None,
        "admin_access_grants": admin_access.grants_on_conversations_of(request.user).filter(
            conversation=conversation
        )[:5]
        if conversation
        else [],
    }
    return render(request, "chat/index.html", context)


# Break-glass reading by site admins (chatapp.chat.admin_access); 404 for everyone else.

# How many of a conversation's messages (of every branch) the admin's read shows a page.
ADMIN_READ_PER_PAGE = 50


class AdminAccessForm(forms.Form):
    reason = forms.CharField(
        min_length=admin_access.REASON_MIN_LENGTH,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "dir": "auto"}),
        help_text="Why you must read this conversation (abuse report, legal request...)."
        " Its owner sees this, and the audit trail keeps it.",
    )
    minutes = forms.TypedChoiceField(
        coerce=int,
        choices=[(m, f"{m} minutes") for m in admin_access.DURATIONS],
        label="Access for",
    )


@login_required
@require_http_methods(["GET", "POST"])
def admin_access_request(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = admin_access.conversation_for_site_admin(request.user, conversation_id)
    form = AdminAccessForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        grant_read_access(
            request.user, conversation, form.cleaned_data["reason"], form.cleaned_data["minutes"]
        )
        return redirect("admin_access_read", conversation.pk)
    context = {
        "conversation": conversation,
        "form": form,
        "grant": admin_access.active_grant(request.user, conversation),
    }
    return render(
        request, "chat/admin_access_request.html", context, status=400 if form.errors else 200
    )


@login_required
@require_GET
def admin_access_read(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = admin_access.conversation_for_site_admin(request.user, conversation_id)
    grant = admin_access.active_grant(request.user, conversation)
    if grant is None:
        return redirect("admin_access_request", conversation.pk)
    # Every branch, oldest first, a page at a time: a conversation may hold thousands. The
    # conversation's id is read too, else each message would fetch it to be joined to it.
    fields = ("conversation_id", "role", "content", "status", "created_at")
    entries = conversation.messages.order_by("id").only(*fields)
    page = Paginator(entries, ADMIN_READ_PER_PAGE).get_page(request.GET.get("page"))
    # Not `messages`: that name is the flashed notices' (base.html), which it would replace.
    context = {"conversation": conversation, "grant": grant, "entries": page.object_list}
    return render(request, "chat/admin_access_read.html", {**context, "page": page})


@login_required
@require_GET
def admin_access_log(request: HttpRequest) -> HttpResponse:
    """The owner's view: every time a site admin was given read access to their conversations."""
    grants = admin_access.grants_on_conversations_of(request.user)[:100]
    return render(request, "chat/admin_access_log.html", {"grants": grants})


# Sharing inside the team (chatapp.chat.actions.sharing): a snapshot at /s/<token>/ for the
# people it names, 404 for everyone else; anonymous visitors are sent to log in first.


# The share page lists this many teammates at most: the first by name, or the first whose name
# holds what was looked for (Find people), and beside them those already chosen.
SHARE_PICKER_SIZE = 100
# A user id as a form sends it (anything longer is no id: int() would refuse a huge one).
USER_ID = re.compile(r"[0-9]{1,18}")


@dataclass
class SharePicker:
    """The teammates the share page lists, and what it says of the others."""

    listed: list[Any]  # those chosen from other searches first, then the first matches by name
    matches: int  # how many of the listed match what was looked for
    chosen: list[int]  # the ids sent as chosen that are teammates
    find: str  # what was looked for ("" for nothing)
    total: int  # the author's teammates
    more: bool  # more of them match than are listed

    @property
    def complete(self) -> bool:
        """Every teammate is listed: the page's box filters them as typed, with no Find."""
        return not self.find and not self.more

    @property
    def note(self) -> str:
        if self.complete:
            return ""
        if not self.find:
            return (
                f"The first {SHARE_PICKER_SIZE} of {self.total} teammates by name are listed:"
                " type part of a name and press Find to list others."
            )
        holding = f"\u201c{self.find}\u201d"
        if self.more:
            return (
                f"The first {SHARE_PICKER_SIZE} teammates whose name holds {holding} are listed:"
                " type more of the name to narrow it."
            )
        if not self.matches:
            return f"Nobody else in the team has a name holding {holding}."
        return f"{counted(self.matches, 'teammate')} with a name holding {holding}."


def share_picker(user: Any, team: Team, data: QueryDict | None) -> SharePicker:
    """The teammates to list on the share page: a bounded number, whatever the team's size,
    with those already chosen (sent back by Find people) kept."""
    teammates = get_user_model().objects.filter(memberships__team=team).exclude(pk=user.pk)
    # One line a username could hold (150 characters at most), nothing a query cannot carry.
    find = one_line(storable(data.get("find", "") if data else ""))[:150]
    matching = teammates.filter(username__icontains=find) if find else teammates
    found = list(matching.order_by("username", "pk")[: SHARE_PICKER_SIZE + 1])
    more = len(found) > SHARE_PICKER_SIZE
    del found[SHARE_PICKER_SIZE:]
    values = data.getlist("members") if data else []
    sent = {int(value) for value in values if USER_ID.fullmatch(value)}
    others = sent - {person.pk for person in found}
    listed = list(teammates.filter(pk__in=others).order_by("username", "pk")) if others else []
    listed += found
    chosen = [person.pk for person in listed if person.pk in sent]
    total = len(found) if not find and not more else teammates.count()
    return SharePicker(listed, len(found), chosen, find, total, more)


class ShareForm(forms.Form):
    audience = forms.ChoiceField(
        choices=ShareAudience.choices, widget=forms.RadioSelect, initial=ShareAudience.TEAM
    )
    members = forms.TypedMultipleChoiceField(
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="With \u201cChosen members\u201d: who may read it.",
    )

    def __init__(self, *args, teammates, **kwargs):
        super().__init__(*args, **kwargs)
        # Each name in its own direction: an Arabic name beside an English one.
        self.fields["members"].choices = [
            (u.pk, format_html("<bdi>{}</bdi>", u.get_username())) for u in teammates
        ]


@login_required
@require_http_methods(["GET", "POST"])
def share_create(request: AuthenticatedHttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_conversation_for_user(request.user, conversation_id, ["team"])
    try:
        sharing.check_shareable(request.user, conversation)
    except ChatError as error:  # nothing to choose: the team's members are not listed
        status = 403 if error.code == "forbidden" else 400
        context = {"conversation": conversation, "refusal": error.message}
        return render(request, "chat/share_create.html", context, status=status)
    sent = request.POST if request.method == "POST" else None
    picker = share_picker(request.user, conversation.team, sent)
    finding = sent is not None and "find_people" in sent
    if sent is not None and finding:  # Find: others listed, those chosen kept, no error
        initial = {"audience": sent.get("audience"), "members": picker.chosen}
        form = ShareForm(initial=initial, teammates=picker.listed)
    else:
        form = ShareForm(sent, teammates=picker.listed)
    if sent is not None and not finding and form.is_valid():
        data = form.cleaned_data
        try:
            share = sharing.share_conversation(
                request.user, conversation, data["audience"], data["members"]
            )
        except ChatError as error:
            form.add_error("members" if error.field else None, error.message)
        else:
            messages.success(request, "Shared: the link below shows the conversation as it is now.")
            return redirect(f"{reverse('shares')}#share-{share.pk}")
    context = {"conversation": conversation, "form": form, "picker": picker, "finding": finding}
    return render(request, "chat/share_create.html", context, status=400 if form.errors else 200)


@login_required
@require_GET
def shares(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The owner's shares, newest first, a page at a time, each with its link and a revoke
    button."""
    listed = Share.objects.filter(owner=request.user).select_related("team")
    listed = listed.prefetch_related("members").defer("messages", "system_prompt")
    page = Paginator(listed, sharing.SHARES_PER_PAGE).get_page(request.GET.get("page"))
    # A share of a team its author left is shown to nobody else until they rejoin.
    teams = set(request.user.memberships.values_list("team_id", flat=True))
    context = {"shares": page.object_list, "page": page, "member_of": teams}
    return render(request, "chat/shares.html", context)


@login_required
@require_POST
def share_revoke(request: AuthenticatedHttpRequest, share_id: int) -> HttpResponse:
    share = Share.objects.filter(owner=request.user, pk=share_id).first()
    if share is None:
        raise Http404("No such share")
    try:
        sharing.revoke_share(request.user, share)
    except ChatError as error:  # revoked meanwhile, by another request
        raise Http404(error.message) from None
    messages.success(request, "Revoked: the link no longer opens for anyone.")
    return redirect("shares")


@login_required
@require_GET
def shared(request: AuthenticatedHttpRequest, share_token: str) -> HttpResponse:
    share = get_share_for_viewer(request.user, share_token)
    # What "Continue in my chats" leaves behind, said before it is pressed. Reading writes
    # nothing: a viewer in no team is told of the personal team continuing would create.
    team = find_current_team(request) or personal_team_to_create(request.user)
    prompt = sharing.fork_prompt(team)
    model = sharing.fork_model(request.user, team)
    fork = {
        "team": team,
        "files": [name for entry in share.messages for name in entry.get("files") or []],
        "prompt": prompt,
        "prompt_differs": share.system_prompt != (prompt.content if prompt else ""),
        "model": model,
        # A share naming no model (shown as "the team's model") has none to compare.
        "model_differs": bool(share.model) and share.model != model,
    }
    context = {
        "share": share,
        "entries": share.messages,
        "is_owner": share.owner_id == request.user.pk,
        "fork": fork,
    }
    return render(request, "chat/shared.html", context)


@login_required
@require_POST
def shared_fork(request: AuthenticatedHttpRequest, share_token: str) -> HttpResponse:
    """Continue in my chats: the snapshot becomes the viewer's own conversation."""
    share = get_share_for_viewer(request.user, share_token)
    try:
        conversation = sharing.fork_share(request.user, share, current_team(request))
    except ChatError as error:  # revoked meanwhile: as any share that is not there
        raise Http404(error.message) from None
    return redirect("conversation", conversation.pk)
