"""The teams' JSON API: the current team's system prompts, and a team's model policy.

Prompts: reads for every member, writes for owners and admins (403 for members); a prompt
outside the user's current team is a 404. Policy: owners and admins of the team; members 403;
everyone else 404. The conventions (errors, auth, CSRF) are chatapp.core.api's.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import Len
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from ninja import Path, Router, Schema, Status
from pydantic import AfterValidator, Field, StringConstraints, create_model
from pydantic.fields import FieldInfo

from chatapp.core.api import (
    MAX_ID,
    ApiError,
    Composed,
    OneLine,
    RequestBody,
    Storable,
    check_if_match,
    documented_body,
    etag,
    precondition_failed,
    read_body,
    responses,
)
from chatapp.llm import GUARD_CATEGORIES
from chatapp.teams import actions, json_schemas, services
from chatapp.teams.datafilter import MAX_PATTERNS
from chatapp.teams.forms import PolicyForm, is_model_id, patterns_text, policy_form_options
from chatapp.teams.models import JsonSchema, Role, SystemPrompt
from chatapp.teams.policy import team_policy

router = Router(tags=["teams"])

PromptId = Annotated[int, Path(ge=1, le=MAX_ID)]
SchemaId = Annotated[int, Path(ge=1, le=MAX_ID)]
TeamId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("cannot be empty")
    return value


PromptName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    Storable,
    OneLine,
    Composed,
]
PromptContent = Annotated[
    str, StringConstraints(max_length=20_000), Storable, AfterValidator(_not_blank)
]


class PromptOut(Schema):
    id: int
    name: str
    content: str
    is_default: bool
    locked: bool
    version: int


class PromptList(Schema):
    results: list[PromptOut]
    can_manage: bool


class PromptCreate(RequestBody):
    name: PromptName
    content: PromptContent
    is_default: bool = False
    locked: bool = False


class PromptChange(RequestBody):
    """The fields to change; a field left out keeps its value."""

    name: PromptName = None  # type: ignore[assignment]  # may be left out, not null
    content: PromptContent = None  # type: ignore[assignment]
    is_default: bool = None  # type: ignore[assignment]
    locked: bool = None  # type: ignore[assignment]


def prompt_json(prompt: SystemPrompt) -> dict:
    return {
        "id": prompt.pk,
        "name": prompt.name,
        "content": prompt.content,
        "is_default": prompt.is_default,
        "locked": prompt.locked,
        "version": prompt.version,
    }


def _manager_of_current_team(request: HttpRequest):
    membership = services.get_membership(request.user, services.current_team(request).pk)
    if not services.can(membership, "manage_prompts"):
        raise ApiError(
            403, "forbidden", "Only the team's owners and admins can change its prompts."
        )
    return membership


def _current_team_prompt(request: HttpRequest, prompt_id: int) -> SystemPrompt:
    team = services.current_team(request)
    prompt = SystemPrompt.objects.filter(pk=prompt_id, team=team).first()
    if prompt is None:
        raise ApiError(404, "not_found", "No such prompt in your current team.")
    return prompt


def _save_prompt(request: HttpRequest, team, prompt: SystemPrompt | None, fields: dict):
    try:
        return actions.save_prompt(request.user, team, prompt, **fields)
    except actions.Gone as error:
        raise ApiError(404, "not_found", error.message) from None
    except actions.Changed:  # after its If-Match passed, before it was saved
        raise precondition_failed() from None
    except actions.LimitReached as error:
        raise ApiError(400, error.code, error.message) from None
    except actions.ActionError as error:
        raise ApiError(400, "invalid", error.message, "name") from None


@router.get("/system-prompts/", response=responses({200: PromptList}))
def prompt_list(request: HttpRequest):
    team = services.current_team(request)
    membership = services.get_membership(request.user, team.pk)
    results = [prompt_json(p) for p in SystemPrompt.objects.for_team(team)]
    return {"results": results, "can_manage": services.can(membership, "manage_prompts")}


@router.post(
    "/system-prompts/",
    response=responses({201: PromptOut}),
    openapi_extra=documented_body(PromptCreate),
)
def prompt_create(request: HttpRequest, response: HttpResponse):
    membership = _manager_of_current_team(request)
    body = read_body(request, PromptCreate)
    saved = _save_prompt(request, membership.team, None, body.model_dump())
    response["ETag"] = etag(saved.state())
    return Status(201, prompt_json(saved))


@router.get("/system-prompts/{int:prompt_id}/", response=responses({200: PromptOut}))
def prompt_read(request: HttpRequest, prompt_id: PromptId, response: HttpResponse):
    """The prompt; its ETag, sent back as If-Match, makes a change of it conditional."""
    prompt = _current_team_prompt(request, prompt_id)
    response["ETag"] = etag(prompt.state())
    return prompt_json(prompt)


@router.patch(
    "/system-prompts/{int:prompt_id}/",
    response=responses({200: PromptOut}),
    openapi_extra=documented_body(PromptChange),
)
def prompt_change(request: HttpRequest, prompt_id: PromptId, response: HttpResponse):
    """With If-Match: only while the prompt is as that ETag read it (else 412)."""
    prompt = _current_team_prompt(request, prompt_id)
    membership = _manager_of_current_team(request)
    conditional = check_if_match(request, prompt.state())
    changes = read_body(request, PromptChange).model_dump(exclude_unset=True)
    fields = {name: changes.get(name, getattr(prompt, name)) for name in PromptChange.model_fields}
    # The answer format is set on the prompts page; a change here keeps it.
    fields.update(response_format=prompt.response_format, json_schema=prompt.json_schema)
    if conditional:  # checked again holding the row: a change saved meanwhile is not undone
        fields["seen"] = prompt.state()
    saved = _save_prompt(request, membership.team, prompt, fields)
    response["ETag"] = etag(saved.state())
    return prompt_json(saved)


@router.delete("/system-prompts/{int:prompt_id}/", response=responses({204: None}))
def prompt_delete(request: HttpRequest, prompt_id: PromptId):
    prompt = _current_team_prompt(request, prompt_id)
    _manager_of_current_team(request)
    check_if_match(request, prompt.state())
    actions.delete_prompt(request.user, prompt)
    return HttpResponse(status=204)


# --- model policy --------------------------------------------------------------------------


ModelId = Annotated[str, StringConstraints(min_length=1, max_length=200), Storable]
CategoryCode = Annotated[str, StringConstraints(min_length=2, max_length=3), Storable]


DataActionName = Literal["off", "redact", "block"]


def _one_line(value: str) -> str:
    # The policy page keeps patterns one per line, trimmed: anything else would be saved as
    # other patterns than the ones sent.
    if value.splitlines() != [value] or value != value.strip():
        raise ValueError("cannot hold a line break or start or end with a space")
    return value


class DataPattern(Schema):
    name: Annotated[str, StringConstraints(min_length=1, max_length=20), Storable]
    pattern: Annotated[
        str, StringConstraints(min_length=1, max_length=300), Storable, AfterValidator(_one_line)
    ]
    action: Literal["redact", "block"]


class PolicyFields(Schema):
    """A team's model policy: null means the site's choice (every model, for the list).

    The one list of the policy's fields in the API: PolicyChange is derived from it, so a new
    field (with its form field on the policy page, which validates it) is added here only.
    """

    allowed_models: Annotated[list[ModelId], Len(max_length=200)]
    default_model: ModelId | None
    default_temperature: float | None
    default_top_p: float | None
    default_max_tokens: int | None
    max_tokens_limit: int | None
    monthly_token_budget: int | None
    member_monthly_token_budget: int | None
    rate_limit_per_minute: int | None
    safety_input: Literal["off", "flag", "block"]
    safety_output: Literal["off", "flag", "block"]
    safety_categories: Annotated[list[CategoryCode], Len(max_length=len(GUARD_CATEGORIES))]
    safety_on_error: Literal["fail_open", "fail_closed"]
    data_card: DataActionName
    data_iban: DataActionName
    data_email: DataActionName
    data_phone: DataActionName
    data_api_key: DataActionName
    data_private_key: DataActionName
    data_patterns: Annotated[list[DataPattern], Len(max_length=MAX_PATTERNS)]
    retention_days: int | None
    legal_hold: bool


def _optional(field: FieldInfo) -> Any:
    annotation: Any = field.annotation
    if field.metadata:  # constraints such as the list's length live here, not in annotation
        annotation = Annotated[annotation, *field.metadata]
    return (annotation | None, None)


PolicyChange = create_model(
    "PolicyChange",
    __base__=RequestBody,
    __doc__="The fields to change (null clears one); a field left out keeps its value.",
    **{name: _optional(field) for name, field in PolicyFields.model_fields.items()},
)


def policy_json(team) -> dict:
    stored = team_policy(team)
    values = {name: getattr(stored, name) for name in PolicyFields.model_fields}
    values["allowed_models"] = values["allowed_models"] or []
    values["default_model"] = values["default_model"] or None
    values["safety_categories"] = values["safety_categories"] or []
    return values


def _check_model_ids(changes: dict) -> None:
    """One id a line on the policy page: an id holding a line break would become two."""
    for field in ("allowed_models", "default_model"):
        value = changes.get(field) or []
        for model_id in [value] if isinstance(value, str) else value:
            if not is_model_id(model_id):
                message = (
                    f"{model_id[:40]!r} is not a model id: it must have no spaces, line breaks"
                    " or control characters."
                )
                raise ApiError(400, "invalid", message, field)


def _policy_form(team, values: dict) -> PolicyForm:
    """The policy page's form, bound to the policy's JSON values."""
    options = policy_form_options(team)
    data = {name: value for name, value in values.items() if value is not None}
    if options["own_server"]:  # a text area there: one model id per line
        data["allowed_models"] = "\n".join(values["allowed_models"])
    data["data_patterns"] = patterns_text(values.get("data_patterns") or [])
    return PolicyForm(data, **options)


@router.get("/teams/{int:team_id}/policy/", response=responses({200: PolicyFields}))
def policy_read(request: HttpRequest, team_id: TeamId, response: HttpResponse):
    """The policy; its ETag, sent back as If-Match, makes a change of it conditional."""
    membership = services.get_team_access(request.user, team_id, "manage_policy")
    response["ETag"] = etag(actions.policy_state(team_policy(membership.team)))
    return policy_json(membership.team)


@router.patch(
    "/teams/{int:team_id}/policy/",
    response=responses({200: PolicyFields}),
    openapi_extra=documented_body(PolicyChange),
)
def policy_change(request: HttpRequest, team_id: TeamId, response: HttpResponse):
    """Checked by the policy page's form, saved and audited as the page saves it. With
    If-Match: only while the policy is as that ETag read it (else 412)."""
    membership = services.get_team_access(request.user, team_id, "manage_policy")
    team = membership.team
    changes = read_body(request, PolicyChange).model_dump(exclude_unset=True)
    _check_model_ids(changes)
    with transaction.atomic():  # a change made meanwhile is read, not saved over
        actions.hold_policy(team)
        check_if_match(request, actions.policy_state(team_policy(team)))  # holding the row
        held = team_policy(team).legal_hold
        if bool(changes.get("legal_hold", held)) != held and membership.role != Role.OWNER:
            raise ApiError(403, "forbidden", "Only the team's owners can set a legal hold.")
        form = _policy_form(team, {**policy_json(team), **changes})
        if not form.is_valid():
            field, errors = next(iter(form.errors.items()))
            field_name = None if field == "__all__" else field
            raise ApiError(400, "invalid", str(errors[0]), field_name)
        saved = actions.set_policy(request.user, team, form.policy_values())
    response["ETag"] = etag(actions.policy_state(saved))
    return policy_json(team)


# --- saved JSON schemas (response_format) --------------------------------------------------

SchemaName = Annotated[str, StringConstraints(min_length=1, max_length=64), Storable]


class JsonSchemaOut(Schema):
    id: int
    name: str
    schema_: dict[str, Any] = Field(alias="schema")
    created_at: datetime
    updated_at: datetime


class JsonSchemaList(Schema):
    results: list[JsonSchemaOut]
    can_manage: bool


class JsonSchemaCreate(RequestBody):
    name: SchemaName
    schema_: dict[str, Any] = Field(alias="schema")


class JsonSchemaChange(RequestBody):
    """The fields to change; a field left out keeps its value."""

    name: SchemaName = None  # type: ignore[assignment]  # may be left out, not null
    schema_: dict[str, Any] = Field(None, alias="schema")  # type: ignore[arg-type]


def json_schema_json(saved: JsonSchema) -> dict:
    return {
        "id": saved.pk,
        "name": saved.name,
        "schema": saved.schema,
        "created_at": saved.created_at,
        "updated_at": saved.updated_at,
    }


def _team_schema(membership, schema_id: int) -> JsonSchema:
    saved = JsonSchema.objects.filter(pk=schema_id, team=membership.team).first()
    if saved is None:
        raise ApiError(404, "not_found", "No such schema in this team.")
    return saved


def _schema_manager(request: HttpRequest, team_id: int):
    membership = services.get_membership(request.user, team_id)
    if not services.can(membership, "manage_prompts"):
        raise ApiError(
            403, "forbidden", "Only the team's owners and admins can change its JSON schemas."
        )
    return membership


def _save_schema(
    request: HttpRequest, membership, saved: JsonSchema | None, name, schema, seen: str = ""
):
    for checked, problem in (
        ("name", json_schemas.name_problem(name)),
        ("schema", json_schemas.schema_problem(schema)),
    ):
        if problem:
            raise ApiError(400, "invalid", problem, checked)
    try:
        return actions.save_json_schema(
            request.user, membership.team, saved, name=name, schema=schema, seen=seen
        )
    except actions.Gone as error:
        raise ApiError(404, "not_found", error.message) from None
    except actions.Changed:  # after its If-Match passed, before it was saved
        raise precondition_failed() from None
    except actions.LimitReached as error:
        raise ApiError(400, error.code, error.message) from None
    except actions.ActionError as error:
        field: str | None = "name" if "already exists" in error.message else None
        raise ApiError(400, "invalid", error.message, field) from None


@router.get(
    "/teams/{int:team_id}/json-schemas/", response=responses({200: JsonSchemaList}), by_alias=True
)
def json_schema_list(request: HttpRequest, team_id: TeamId):
    membership = services.get_membership(request.user, team_id)
    saved = JsonSchema.objects.filter(team=membership.team)
    return {
        "results": [json_schema_json(item) for item in saved],
        "can_manage": services.can(membership, "manage_prompts"),
    }


@router.post(
    "/teams/{int:team_id}/json-schemas/",
    response=responses({201: JsonSchemaOut}),
    by_alias=True,
    openapi_extra=documented_body(JsonSchemaCreate),
)
def json_schema_create(request: HttpRequest, team_id: TeamId, response: HttpResponse):
    membership = _schema_manager(request, team_id)
    body = read_body(request, JsonSchemaCreate)
    saved = _save_schema(request, membership, None, body.name, body.schema_)
    response["ETag"] = etag(saved.state())
    return Status(201, json_schema_json(saved))


@router.get(
    "/teams/{int:team_id}/json-schemas/{int:schema_id}/",
    response=responses({200: JsonSchemaOut}),
    by_alias=True,
)
def json_schema_read(
    request: HttpRequest, team_id: TeamId, schema_id: SchemaId, response: HttpResponse
):
    """The schema; its ETag, sent back as If-Match, makes a change of it conditional."""
    membership = services.get_membership(request.user, team_id)
    saved = _team_schema(membership, schema_id)
    response["ETag"] = etag(saved.state())
    return json_schema_json(saved)


@router.patch(
    "/teams/{int:team_id}/json-schemas/{int:schema_id}/",
    response=responses({200: JsonSchemaOut}),
    by_alias=True,
    openapi_extra=documented_body(JsonSchemaChange),
)
def json_schema_change(
    request: HttpRequest, team_id: TeamId, schema_id: SchemaId, response: HttpResponse
):
    """With If-Match: only while the schema is as that ETag read it (else 412)."""
    membership = services.get_membership(request.user, team_id)
    saved = _team_schema(membership, schema_id)
    _schema_manager(request, team_id)
    # Checked again holding the row: a change saved meanwhile is not undone.
    seen = saved.state() if check_if_match(request, saved.state()) else ""
    changes = read_body(request, JsonSchemaChange).model_dump(exclude_unset=True)
    name = changes.get("name", saved.name)
    schema = changes.get("schema_", saved.schema)
    saved = _save_schema(request, membership, saved, name, schema, seen)
    response["ETag"] = etag(saved.state())
    return json_schema_json(saved)


@router.delete(
    "/teams/{int:team_id}/json-schemas/{int:schema_id}/", response=responses({204: None})
)
def json_schema_delete(request: HttpRequest, team_id: TeamId, schema_id: SchemaId):
    membership = services.get_membership(request.user, team_id)
    saved = _team_schema(membership, schema_id)
    _schema_manager(request, team_id)
    check_if_match(request, saved.state())
    actions.delete_json_schema(request.user, saved)
    return HttpResponse(status=204)
