"""A team's saved JSON schemas: the JSON API for every role, the team page, the audit trail."""

import json

import pytest

from chatapp.chat import json_output
from chatapp.teams import actions, api, views
from chatapp.teams.json_schemas import MAX_SCHEMA_BYTES
from chatapp.teams.models import AuditEvent, JsonSchema, SystemPrompt, Team

pytestmark = pytest.mark.django_db

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}


def nested(levels: int) -> dict:
    """A schema of arrays of arrays ...: JSON that reads, nested past what the checks can walk."""
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "array", "items": schema}
    return schema


def listing(team) -> str:
    return f"/api/teams/{team.pk}/json-schemas/"


def detail(saved) -> str:
    return f"/api/teams/{saved.team_id}/json-schemas/{saved.pk}/"


def send(client, method: str, url: str, body) -> object:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return getattr(client, method)(url, data, content_type="application/json")


@pytest.fixture
def saved(team) -> JsonSchema:
    return JsonSchema.objects.create(team=team, name="ticket", schema=SCHEMA)


@pytest.fixture(params=["owner", "admin_member"])
def manager_client(request, client):
    client.force_login(request.getfixturevalue(request.param))
    return client


def test_members_read_the_teams_schemas(member_client, team, saved):
    response = member_client.get(listing(team))
    assert response.status_code == 200
    data = response.json()
    assert data["can_manage"] is False
    assert [(s["id"], s["name"], s["schema"]) for s in data["results"]] == [
        (saved.pk, "ticket", SCHEMA)
    ]
    assert member_client.get(detail(saved)).json()["schema"] == SCHEMA


def test_owners_and_admins_create_change_and_delete_and_each_is_audited(manager_client, team):
    created = send(manager_client, "post", listing(team), {"name": "invoice", "schema": SCHEMA})
    assert created.status_code == 201, created.content
    schema_id = created.json()["id"]
    stored = JsonSchema.objects.get(pk=schema_id, team=team)
    assert stored.schema == SCHEMA

    changed = send(manager_client, "patch", detail(stored), {"schema": {"type": "array"}})
    assert changed.status_code == 200
    assert changed.json()["name"] == "invoice"
    stored.refresh_from_db()
    assert stored.schema == {"type": "array"}

    assert manager_client.delete(detail(stored)).status_code == 204
    assert not JsonSchema.objects.filter(pk=schema_id).exists()
    actions = list(
        AuditEvent.objects.filter(team=team).order_by("id").values_list("action", flat=True)
    )
    assert actions[-3:] == ["json_schema.create", "json_schema.update", "json_schema.delete"]


def test_members_may_not_write(member_client, team, saved):
    for method, url, body in [
        ("post", listing(team), {"name": "x", "schema": SCHEMA}),
        ("patch", detail(saved), {"name": "y"}),
        ("delete", detail(saved), ""),
    ]:
        response = send(member_client, method, url, body)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    saved.refresh_from_db()
    assert saved.name == "ticket"
    assert JsonSchema.objects.count() == 1


def test_outsiders_get_404_for_everything(outsider_client, team, saved):
    for method, url, body in [
        ("get", listing(team), None),
        ("post", listing(team), {"name": "x", "schema": SCHEMA}),
        ("get", detail(saved), None),
        ("patch", detail(saved), {"name": "y"}),
        ("delete", detail(saved), ""),
    ]:
        response = (
            outsider_client.get(url) if body is None else send(outsider_client, method, url, body)
        )
        assert response.status_code == 404, (method, url)
    assert JsonSchema.objects.get().name == "ticket"


def test_another_teams_schema_is_404_even_to_an_owner(owner_client, team):
    other = Team.objects.create(name="Other")
    foreign = JsonSchema.objects.create(team=other, name="secret", schema=SCHEMA)
    url = f"/api/teams/{team.pk}/json-schemas/{foreign.pk}/"
    assert owner_client.get(url).status_code == 404
    assert send(owner_client, "delete", url, "").status_code == 404
    assert JsonSchema.objects.filter(pk=foreign.pk).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "has space", "schema": SCHEMA}, "name"),
        ({"name": "bad", "schema": {"type": "no-such-type"}}, "schema"),
        ({"name": "bad", "schema": {"properties": {"a": {"minLength": -1}}}}, "schema"),
        ({"name": "bad", "schema": {"pattern": "("}}, "schema"),
        ({"name": "big", "schema": {"description": "x" * MAX_SCHEMA_BYTES}}, "schema"),
        ({"name": "nul", "schema": {"description": "a\u0000b"}}, "schema"),
        ({"name": "list", "schema": [1, 2]}, "schema"),
        ('{"name": "nan", "schema": {"maximum": NaN}}', "schema"),
        ('{"name": "inf", "schema": {"maximum": 1e999}}', "schema"),
        ({"name": "deep", "schema": nested(300)}, "schema"),
        ({"name": "far", "schema": {"$ref": "http://169.254.169.254/latest/"}}, "schema"),
        ({"name": "disk", "schema": {"items": [{"$ref": "file:///srv/a.json"}]}}, "schema"),
        ({"name": "dyn", "schema": {"$dynamicRef": "https://example.com/s"}}, "schema"),
        ({"name": "ticket", "schema": SCHEMA}, "name"),  # the name is taken
        ({"name": "extra", "schema": SCHEMA, "owner": 1}, "owner"),
    ],
)
def test_bad_schemas_are_refused_with_a_field_and_change_nothing(
    owner_client, team, saved, body, field
):
    response = send(owner_client, "post", listing(team), body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error.get("field") == field
    assert JsonSchema.objects.count() == 1
    assert not AuditEvent.objects.filter(action="json_schema.create").exists()


def test_refs_inside_the_schema_are_kept_and_others_are_explained(owner_client, team):
    inside = {
        "type": "object",
        "properties": {"step": {"$ref": "#/$defs/step"}, "$ref": {"type": "string"}},
        "$defs": {"step": {"type": "string"}},
    }
    created = send(owner_client, "post", listing(team), {"name": "inside", "schema": inside})
    assert created.status_code == 201, created.content
    anchored = {
        "$dynamicAnchor": "node",
        "properties": {
            "child": {"$dynamicRef": "#node"},
            "part": {
                "$id": "https://example.com/part.json",
                "$ref": "#/$defs/p",
                "$defs": {"p": {}},
            },
            "odd": {"$ref": "#/$defs/a~1b%20c"},
        },
        "$defs": {"a/b c": {"type": "integer"}},
    }
    created = send(owner_client, "post", listing(team), {"name": "anchored", "schema": anchored})
    assert created.status_code == 201, created.content
    outside = {"properties": {"step": {"$ref": "https://example.com/step.json"}}}
    refused = send(owner_client, "post", listing(team), {"name": "outside", "schema": outside})
    message = refused.json()["error"]["message"]
    assert "refers outside itself (https://example.com/step.json)" in message
    assert "copy what it refers to into $defs" in message


@pytest.mark.parametrize(
    ("schema", "ref"),
    [
        ({"properties": {"step": {"$ref": "#/$defs/stpe"}}, "$defs": {"step": {}}}, "#/$defs/stpe"),
        ({"properties": {"child": {"$dynamicRef": "#node"}}}, "#node"),
        # Relative to the nearest $id, as answers are checked: that part has no $defs.
        (
            {"$defs": {"s": {}}, "items": {"$id": "https://example.com/i", "$ref": "#/$defs/s"}},
            "#/$defs/s",
        ),
        (
            {"properties": {"a": {"enum": [1]}, "b": {"$ref": "#/properties/a/enum"}}},
            "#/properties/a/enum",
        ),
    ],
)
def test_a_ref_to_nothing_in_the_schema_is_refused(owner_client, team, schema, ref):
    """Every answer would be marked "could not be checked": say so when the schema is saved."""
    refused = send(owner_client, "post", listing(team), {"name": "dangling", "schema": schema})
    assert refused.status_code == 400, refused.content
    error = refused.json()["error"]
    assert error["field"] == "schema"
    assert error["message"].startswith(f"The schema's $ref {ref!r} points to nothing in it")
    assert not JsonSchema.objects.filter(name="dangling").exists()


@pytest.mark.parametrize(
    ("schema", "ref"),
    [
        ({"$ref": "#"}, "#"),
        ({"allOf": [{"type": "object"}, {"$ref": "#"}]}, "#"),
        (
            {
                "$ref": "#/$defs/a",
                "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
            },
            "#/$defs/b",
        ),
        # Reached only through a property, but going round without one.
        (
            {
                "properties": {"x": {"$ref": "#/$defs/a"}},
                "$defs": {"a": {"not": {"$ref": "#/$defs/a"}}},
            },
            "#/$defs/a",
        ),
        (
            {"$dynamicAnchor": "node", "anyOf": [{"type": "string"}, {"$dynamicRef": "#node"}]},
            "#node",
        ),
    ],
    ids=["root", "all-of", "two-defs", "under-a-property", "dynamic"],
)
def test_a_ref_cycle_that_never_reaches_the_answer_is_refused(owner_client, team, schema, ref):
    """Checking an answer would follow it forever ("could not be checked: RecursionError")."""
    refused = send(owner_client, "post", listing(team), {"name": "loop", "schema": schema})
    assert refused.status_code == 400, refused.content
    error = refused.json()["error"]
    assert error["field"] == "schema"
    assert error["message"].startswith(f"The schema's $ref {ref!r} leads back to itself")
    assert not JsonSchema.objects.filter(name="loop").exists()


def test_a_recursive_schema_that_steps_into_the_answer_is_kept(owner_client, team):
    """A tree: each child is checked against the whole schema, one level deeper each time."""
    tree = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#"}},
            "next": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/node"}]},
        },
        "$defs": {"node": {"allOf": [{"$ref": "#"}]}},
    }
    created = send(owner_client, "post", listing(team), {"name": "tree", "schema": tree})
    assert created.status_code == 201, created.content
    answer = {"name": "a", "children": [{"name": "b", "children": []}], "next": {"name": "c"}}
    checked = json_output.check_answer(
        {"type": "json_schema", "name": "tree", "schema": tree}, json.dumps(answer), "complete"
    )
    assert checked == {"type": "json_schema", "name": "tree", "schema_id": None, "valid": True}


def test_patterns_answers_cannot_be_matched_with_are_refused(owner_client, team):
    """Answers are matched with RE2 (linear time), which runs no lookaround or backreference."""
    plain = {"properties": {"code": {"pattern": "^[A-Z]{3}-\\d+$"}, "pattern": {}}}
    created = send(owner_client, "post", listing(team), {"name": "plain", "schema": plain})
    assert created.status_code == 201, created.content
    for name, schema in [
        ("ahead", {"properties": {"code": {"pattern": "^(?=A)\\w+$"}}}),
        ("named", {"patternProperties": {"^(a)\\1$": {}}}),
    ]:
        refused = send(owner_client, "post", listing(team), {"name": name, "schema": schema})
        assert refused.status_code == 400, refused.content
        assert "lookaround or a backreference" in refused.json()["error"]["message"]
    assert list(JsonSchema.objects.filter(team=team).values_list("name", flat=True)) == ["plain"]


def test_the_team_page_lists_adds_edits_and_deletes(owner_client, team, saved):
    page = owner_client.get(f"/teams/{team.pk}/json-schemas/")
    assert page.status_code == 200
    assert b"ticket" in page.content and b"Add a schema" in page.content

    refused = owner_client.post(
        f"/teams/{team.pk}/json-schemas/", {"name": "broken", "schema": "{not json"}
    )
    assert refused.status_code == 400
    assert b"This is not JSON" in refused.content
    for text, problem in [
        ("[" * 5000 + "]" * 5000, b"nested too deeply to read"),
        ('{"type": "number", "maximum": Infinity}', b"JSON cannot store"),
        (json.dumps(nested(300)), b"nested too deeply to check"),
    ]:
        refused = owner_client.post(
            f"/teams/{team.pk}/json-schemas/", {"name": "deep", "schema": text}
        )
        assert refused.status_code == 400
        assert problem in refused.content
    added = owner_client.post(
        f"/teams/{team.pk}/json-schemas/", {"name": "order", "schema": json.dumps(SCHEMA)}
    )
    assert added.status_code == 302
    order = JsonSchema.objects.get(name="order")

    edited = owner_client.post(
        f"/teams/{team.pk}/json-schemas/{order.pk}/",
        {"name": "order2", "schema": '{"type": "object"}'},
    )
    assert edited.status_code == 302
    order.refresh_from_db()
    assert (order.name, order.schema) == ("order2", {"type": "object"})

    deleted = owner_client.post(f"/teams/{team.pk}/json-schemas/{order.pk}/delete/")
    assert deleted.status_code == 302
    assert list(JsonSchema.objects.values_list("name", flat=True)) == ["ticket"]


def test_the_team_page_refuses_a_number_too_long_to_read(owner_client, team, saved):
    text = '{"type": "string", "maxLength": ' + "9" * 5000 + "}"
    refused = owner_client.post(f"/teams/{team.pk}/json-schemas/", {"name": "long", "schema": text})
    assert refused.status_code == 400
    assert b"number too long to read" in refused.content
    assert list(JsonSchema.objects.values_list("name", flat=True)) == ["ticket"]


def test_members_see_the_page_without_forms_and_cannot_post(member_client, team, saved):
    page = member_client.get(f"/teams/{team.pk}/json-schemas/")
    assert page.status_code == 200
    assert b"Add a schema" not in page.content
    response = member_client.post(
        f"/teams/{team.pk}/json-schemas/", {"name": "x", "schema": json.dumps(SCHEMA)}
    )
    assert response.status_code == 403
    assert (
        member_client.post(f"/teams/{team.pk}/json-schemas/{saved.pk}/delete/").status_code == 403
    )
    assert JsonSchema.objects.count() == 1


def test_a_prompt_takes_a_saved_schema_as_its_answer_format(owner_client, team, saved):
    response = owner_client.post(
        f"/teams/{team.pk}/prompts/",
        {"name": "Tickets", "content": "File tickets.", "answer_format": f"json_schema:{saved.pk}"},
    )
    assert response.status_code == 302
    prompt = SystemPrompt.objects.get(name="Tickets")
    assert (prompt.response_format, prompt.json_schema) == ("json_schema", saved)
    edit = owner_client.get(f"/teams/{team.pk}/prompts/{prompt.pk}/")
    assert f'value="json_schema:{saved.pk}" selected'.encode() in edit.content


def test_a_prompt_cannot_take_another_teams_schema(owner_client, team):
    foreign = JsonSchema.objects.create(
        team=Team.objects.create(name="Other"), name="x", schema=SCHEMA
    )
    response = owner_client.post(
        f"/teams/{team.pk}/prompts/",
        {
            "name": "Tickets",
            "content": "File tickets.",
            "answer_format": f"json_schema:{foreign.pk}",
        },
    )
    assert response.status_code == 400
    assert not SystemPrompt.objects.filter(name="Tickets").exists()


def test_a_schema_two_admins_delete_at_once_is_deleted_once(team, owner, admin_member, saved):
    shown = JsonSchema.objects.get(pk=saved.pk)  # as the second admin's page read it
    actions.delete_json_schema(owner, saved)
    actions.delete_json_schema(admin_member, shown)
    assert not JsonSchema.objects.exists()
    deleted = AuditEvent.objects.filter(action="json_schema.delete")
    assert list(deleted.values_list("actor", flat=True)) == [owner.pk]


def test_an_edit_of_a_schema_deleted_meanwhile_says_so_and_adds_nothing(
    owner_client, team, saved, deleted_once_read
):
    deleted_once_read(views, "_schema_target")
    response = owner_client.post(
        f"/teams/{team.pk}/json-schemas/{saved.pk}/", {"name": "ticket", "schema": "{}"}
    )
    assert response.status_code == 400
    assert b"The schema ticket was deleted meanwhile" in response.content
    assert not JsonSchema.objects.exists()
    assert not AuditEvent.objects.exists()


def test_a_patch_of_a_schema_deleted_meanwhile_is_404(owner_client, team, saved, deleted_once_read):
    deleted_once_read(api, "_team_schema")
    response = send(owner_client, "patch", detail(saved), {"schema": {"type": "object"}})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not JsonSchema.objects.exists()


def test_a_write_with_an_etag_read_before_another_admins_change_is_412(
    owner_client, admin_client, team, saved
):
    """Olivia reads the schema; Adam changes it; Olivia's change or delete, sent with the
    ETag she read as If-Match, changes nothing. Sent with the current ETag, it saves."""
    tag = owner_client.get(detail(saved))["ETag"]
    wider = {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "number"}}}
    adams = send(admin_client, "patch", detail(saved), {"schema": wider})
    assert adams.status_code == 200 and adams["ETag"] != tag
    assert owner_client.get(detail(saved))["ETag"] == adams["ETag"]  # as stored, key order too
    stale = owner_client.patch(
        detail(saved),
        json.dumps({"name": "olivias"}),
        content_type="application/json",
        headers={"If-Match": tag},
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert owner_client.delete(detail(saved), headers={"If-Match": tag}).status_code == 412
    saved.refresh_from_db()
    assert (saved.name, saved.schema) == ("ticket", wider)
    fresh = owner_client.patch(
        detail(saved),
        json.dumps({"name": "olivias"}),
        content_type="application/json",
        headers={"If-Match": adams["ETag"]},
    )
    assert fresh.status_code == 200 and fresh.json()["name"] == "olivias"


def test_a_page_save_read_before_another_admins_change_saves_nothing(
    owner_client, admin_member, team, saved
):
    """Adam widened the schema while Olivia's edit page was open: saving her page (the schema
    as she read it, renamed) must not silently put his change back. Nothing is saved, the page
    says so and keeps what she typed; saving again, once seen, goes through."""
    url = f"/teams/{team.pk}/json-schemas/{saved.pk}/"
    form = owner_client.get(url).context["form"]
    read = {name: form[name].value() for name in form.fields}
    wider = {"type": "object", "properties": {"b": {"type": "string"}}}
    actions.save_json_schema(admin_member, team, saved, name="ticket", schema=wider)
    typed = {**read, "name": "olivias"}
    response = owner_client.post(url, typed)
    assert response.status_code == 400
    assert b"changed meanwhile" in response.content and b"olivias" in response.content
    saved.refresh_from_db()
    assert (saved.name, saved.schema) == ("ticket", wider)
    again = {"seen": response.context["form"]["seen"].value()}
    assert owner_client.post(url, {**typed, **again}).status_code == 302
    saved.refresh_from_db()
    assert (saved.name, saved.schema) == ("olivias", SCHEMA)
