"""The JSON API names outside clients rely on (the design's contract), checked against the
OpenAPI document the API serves (generated from the code that answers): every address and
method is there, and every request and response carries the contract's field names, whatever
else is added beside them."""

import re

import pytest

pytestmark = pytest.mark.django_db

# (method, address, status) -> the response's fields; a nested "name.item" (a list's items)
# or "name.field" (an object's) names what is inside.
RESPONSES = {
    ("get", "/api/conversations/", 200): {
        "results",
        "next",
        *("results.id", "results.title", "results.created_at", "results.updated_at"),
        *("results.message_id", "results.snippet"),
    },
    ("get", "/api/conversations/{}/", 200): {
        *("id", "title", "settings", "messages"),
        *("messages.id", "messages.role", "messages.content", "messages.status"),
        *("messages.model", "messages.usage", "messages.created_at"),
        *("messages.parent_id", "messages.sibling_ids", "messages.attachments"),
    },
    ("patch", "/api/conversations/{}/", 200): set(),
    ("delete", "/api/conversations/{}/", 204): set(),
    ("get", "/api/conversations/{}/export", 200): set(),
    ("get", "/api/system-prompts/", 200): set(),
    ("post", "/api/system-prompts/", 201): {
        *("id", "name", "content", "is_default", "locked", "version"),
    },
    ("patch", "/api/system-prompts/{}/", 200): set(),
    ("delete", "/api/system-prompts/{}/", 204): set(),
    ("get", "/api/models/", 200): set(),
    ("get", "/api/settings/", 200): set(),
    ("put", "/api/settings/", 200): set(),
    ("get", "/api/me/", 200): {
        *("id", "username", "is_site_admin", "current_team", "teams"),
        *("current_team.id", "current_team.name", "current_team.role"),
        *("teams.id", "teams.name", "teams.role"),
    },
    ("get", "/api/teams/{}/policy/", 200): {"safety_input", "safety_output"},
    ("patch", "/api/teams/{}/policy/", 200): {"safety_input", "safety_output"},
    ("post", "/api/uploads/", 201): {"id", "content_type", "bytes", "width", "height"},
    ("get", "/api/uploads/{}/", 200): set(),
    ("get", "/api/teams/{}/tool-servers/", 200): set(),
    ("post", "/api/teams/{}/tool-servers/", 201): {
        *("id", "name", "url", "tools"),
        *("tools.name", "tools.description", "tools.enabled"),
    },
    ("patch", "/api/teams/{}/tool-servers/{}/", 200): set(),
    ("delete", "/api/teams/{}/tool-servers/{}/", 204): set(),
    ("post", "/api/keys/", 201): {"id", "name", "key"},
    ("get", "/api/keys/", 200): set(),
    ("delete", "/api/keys/{}/", 204): set(),
}
# JSON request bodies: (method, address) -> their fields.
REQUESTS = {
    ("post", "/api/system-prompts/"): {"name", "content", "is_default", "locked"},
    ("post", "/api/teams/{}/tool-servers/"): {"name", "url", "token"},
    ("post", "/api/keys/"): {"name"},
    ("patch", "/api/teams/{}/policy/"): {"safety_input", "safety_output"},
}
SAFETY_MODES = {"off", "flag", "block"}


@pytest.fixture(scope="module")
def document(django_db_blocker):
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/api/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(document) -> dict[tuple[str, str], dict]:
    """(method, address with its {parameters} emptied) -> the OpenAPI operation."""
    return {
        (method, re.sub(r"\{[^}]*\}", "{}", path)): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }


def resolved(document, schema: dict) -> dict:
    """A schema with its $ref (and a nullable anyOf's one object) followed."""
    while True:
        if "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif "anyOf" in schema:
            schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
        elif schema.get("type") == "array":
            schema = schema["items"]
        else:
            return schema


def field_names(document, schema: dict, prefix: str = "") -> set[str]:
    """Every field of a JSON schema, nested ones as "outer.inner"."""
    names = set()
    for name, inner in resolved(document, schema).get("properties", {}).items():
        names.add(prefix + name)
        if resolved(document, inner).get("properties"):
            names |= field_names(document, inner, f"{prefix}{name}.")
    return names


def enum_of(document, schema: dict, name: str) -> set[str]:
    field = resolved(document, resolved(document, schema)["properties"][name])
    return set(field["enum"])


@pytest.mark.parametrize(("method", "address", "status"), sorted(RESPONSES))
def test_the_contracts_addresses_answer_with_its_names(document, method, address, status):
    operation = operations(document).get((method, address))
    assert operation is not None, f"{method.upper()} {address} is missing"
    assert str(status) in operation["responses"]
    content = operation["responses"][str(status)].get("content", {})
    wanted = RESPONSES[method, address, status]
    if wanted:
        schema = content["application/json"]["schema"]
        assert wanted <= field_names(document, schema)


@pytest.mark.parametrize(("method", "address"), sorted(REQUESTS))
def test_the_contracts_request_bodies_take_its_names(document, method, address):
    body = operations(document)[method, address]["requestBody"]["content"]
    schema = body.get("application/json", {}).get("schema")
    assert REQUESTS[method, address] <= field_names(document, schema)


def test_the_policy_safety_modes_are_off_flag_block(document):
    for method in ("get", "patch"):
        operation = operations(document)[method, "/api/teams/{}/policy/"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        for name in ("safety_input", "safety_output"):
            assert enum_of(document, schema, name) == SAFETY_MODES
