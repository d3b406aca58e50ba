"""The account's JSON API: who am I (`/api/me/`) and the user's own chat defaults
(`/api/settings/`). The conventions (errors, auth, CSRF) are chatapp.core.api's."""

from datetime import datetime
from typing import Annotated

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Path, Query, Router, Schema, Status
from pydantic import StringConstraints

from chatapp.accounts import keys, preferences
from chatapp.accounts.models import UserSettings
from chatapp.core.api import (
    MAX_ID,
    ApiError,
    Composed,
    OneLine,
    RequestBody,
    Storable,
    Text,
    documented_body,
    read_body,
    responses,
)
from chatapp.core.requests import AuthenticatedHttpRequest
from chatapp.teams import actions as team_actions
from chatapp.teams import api_keys, budgets, policy
from chatapp.teams.models import Membership
from chatapp.teams.services import current_team, named_team, switch_team

router = Router(tags=["account"])


class TeamRole(Schema):
    id: int
    name: str
    role: str


class Me(Schema):
    id: int
    username: str
    is_site_admin: bool
    current_team: TeamRole
    teams: list[TeamRole]


class EffectiveSettings(Schema):
    model: str
    temperature: float
    max_tokens: int
    top_p: float


class SettingsOut(Schema):
    model: str | None
    temperature: float | None
    max_tokens: int | None
    top_p: float | None
    effective: EffectiveSettings | None


class SettingsIn(RequestBody):
    """Null (or a missing field) means "use the team's default"."""

    model: Text | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    # What GET answers besides the stored values; a client may send it back unchanged.
    effective: dict | None = None


class MeIn(RequestBody):
    current_team: int = Field(
        ge=1, le=MAX_ID, description="One of your teams: new chats start there."
    )


@router.get("/me/", response=responses({200: Me}))
def me(request: AuthenticatedHttpRequest):
    return me_data(request)


@router.patch("/me/", response=responses({200: Me}), openapi_extra=documented_body(MeIn))
def me_switch_team(request: AuthenticatedHttpRequest):
    """Switch the session's current team (as the Teams page's "Make current" does)."""
    body = read_body(request, MeIn)
    switch_team(request, named_team(request.user, body.current_team, "current_team"))
    return me_data(request)


def me_data(request: AuthenticatedHttpRequest) -> dict:
    user = request.user
    team = current_team(request)
    memberships = Membership.objects.filter(user=user).select_related("team")
    teams = [
        {"id": m.team_id, "name": m.team.name, "role": m.role}
        for m in memberships.order_by("team__name", "team_id")
    ]
    current = next(t for t in teams if t["id"] == team.pk)
    return {
        "id": user.pk,
        "username": user.get_username(),
        "is_site_admin": user.is_superuser,
        "current_team": current,
        "teams": teams,
    }


PAGE_TEAM = Query(
    None, ge=1, le=MAX_ID, description="One of your teams (the chat page's); else the current team"
)


@router.get("/settings/", response=responses({200: SettingsOut}), tags=["settings"])
def settings_read(request: AuthenticatedHttpRequest, team: int | None = PAGE_TEAM):
    """The user's own defaults, and what they come to in a team (`effective`)."""
    shown = current_team(request) if team is None else named_team(request.user, team, "team")
    return settings_data(request.user, shown)


@router.put(
    "/settings/",
    response=responses({200: SettingsOut}),
    openapi_extra=documented_body(SettingsIn),
    tags=["settings"],
)
def settings_write(request: AuthenticatedHttpRequest):
    team = current_team(request)
    body = read_body(request, SettingsIn)
    values = {name: getattr(body, name) for name in policy.SETTING_NAMES}
    values["model"] = values["model"] or None
    try:
        # Checked as they will apply: a null model is the team's default, not the one stored.
        policy.validate_settings(team, values)
    except policy.PolicyError as error:
        raise ApiError(400, error.code, error.message, error.field) from None
    # A blank model is stored as "", the other fields as NULL: both mean "use the default".
    stored = {**values, "model": values["model"] or ""}
    UserSettings.objects.update_or_create(user=request.user, defaults=stored)
    return settings_data(request.user, team)


def settings_data(user, team) -> dict:
    stored = UserSettings.objects.filter(user=user).first()
    own = {name: getattr(stored, name) if stored else None for name in policy.SETTING_NAMES}
    own["model"] = own["model"] or None
    try:
        effective = preferences.effective_settings(user, team)
    except policy.PolicyError:
        effective = None
    return {**own, "effective": effective}


class BudgetMeter(Schema):
    kind: str
    label: str
    used: int
    limit: int
    percent: int
    level: str
    message: str


class BudgetOut(Schema):
    team_id: int
    meters: list[BudgetMeter]


@router.get("/budget/", response=responses({200: BudgetOut}), tags=["account"])
def budget(request: AuthenticatedHttpRequest, team: int | None = PAGE_TEAM):
    """A team's monthly budget and the user's own limit in it, as the meters show."""
    shown = current_team(request) if team is None else named_team(request.user, team, "team")
    return {
        "team_id": shown.pk,
        "meters": [meter.as_json() for meter in budgets.meters(shown, request.user)],
    }


# --- personal API keys ---------------------------------------------------------------------

KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]
KeyName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    Storable,
    OneLine,
    Composed,
]


class KeyCreate(RequestBody):
    name: KeyName
    # An ISO date (the key works through that day) or date-time; none: the key never expires.
    expires_at: Text | None = None


class KeyOut(Schema):
    id: int
    name: str
    prefix: str
    team_id: int | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    expired: bool


class KeyCreated(KeyOut):
    key: str  # shown this once; only its hash is stored


class KeyList(Schema):
    results: list[KeyOut]


@router.post(
    "/keys/",
    response=responses({201: KeyCreated}),
    openapi_extra=documented_body(KeyCreate),
    tags=["keys"],
)
def key_create(request: AuthenticatedHttpRequest):
    body = read_body(request, KeyCreate)
    try:
        expires_at = keys.parse_expiry(body.expires_at)
    except keys.KeyProblem as problem:
        raise ApiError(400, "invalid", str(problem), "expires_at") from None
    try:
        keys.check_room(request.user)
    except keys.KeyProblem as problem:
        raise ApiError(400, "too_many_keys", str(problem)) from None
    team = current_team(request)
    key, secret = team_actions.create_api_key(request.user, team, body.name, expires_at)
    return Status(201, {**keys.key_json(key), "key": secret})


@router.get("/keys/", response=responses({200: KeyList}), tags=["keys"])
def key_list(request: AuthenticatedHttpRequest):
    return {"results": [keys.key_json(key) for key in api_keys.keys_of(request.user)]}


@router.delete("/keys/{int:key_id}/", response=responses({204: None}), tags=["keys"])
def key_revoke(request: AuthenticatedHttpRequest, key_id: KeyId):
    key = get_object_or_404(api_keys.keys_of(request.user), pk=key_id)
    team_actions.revoke_api_key(request.user, key)
    return HttpResponse(status=204)
