"""response_format: JSON answers, and for a JSON schema a small instance that is valid against it.

The instance is built from the schema's own words: `const`, `enum`, `default`, `type` (the
first non-null one of a list), the properties of objects (every listed one, required or not),
`minItems` of arrays, `minimum`/`minLength` and the usual string formats, the first choice of
`anyOf`/`oneOf`, merged `allOf`, and local `$ref`s (`#/$defs/...`).
"""

import json
from typing import Any

FORMATS = {"text", "json_object", "json_schema"}
NATIVE_FORMATS = {"text", "json_schema"}  # llama-api-client's ResponseFormat: no json_object
MAX_DEPTH = 12
# A schema may ask for a billion items, or ten a level twelve levels down: past these the
# instance holds nulls and shorter strings (and may break the schema) rather than fill memory.
MAX_VALUES = 10_000
MAX_STRING = 10_000
STRING_FORMATS = {
    "date": "2026-01-01",
    "date-time": "2026-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "email": "llama@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
}


def format_problem(value: Any, native: bool) -> str | None:
    """Why a request's response_format is refused (a 400's detail), or None."""
    if value is None:
        return None
    kinds = NATIVE_FORMATS if native else FORMATS
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in kinds:
        return f"response_format.type: must be one of {', '.join(sorted(kinds))}."
    if kind != "json_schema":
        return None
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        return "response_format.json_schema: needs a name and a schema."
    if not isinstance(spec.get("schema"), dict):
        return "response_format.json_schema.schema: must be a JSON Schema object."
    return None


def json_answer(response_format: dict, question: str, turn: int) -> Any:
    """The value a JSON answer holds: an instance of the schema, or a small object."""
    if response_format.get("type") == "json_schema":
        schema = response_format["json_schema"]["schema"]
        return instance(schema, schema, question, 0)
    return {"answer": question or "(an empty message)", "turn": turn, "source": "simulator"}


def broken_json(value: Any) -> str:
    """[sim:bad_json]: the answer's JSON cut off before its end, so it does not parse."""
    text = json.dumps(value, indent=2)
    return text[: max(1, len(text) // 2)]


def off_schema(value: Any) -> Any:
    """[sim:off_schema]: JSON that parses but breaks the schema (a type no schema asks for)."""
    return {"unexpected": [value]} if not isinstance(value, dict) else [value]


def instance(schema: Any, root: dict, text: str, depth: int, left: list[int] | None = None) -> Any:
    """A value valid against `schema`; `left` counts the values it may still hold."""
    left = [MAX_VALUES] if left is None else left
    if not isinstance(schema, dict) or depth > MAX_DEPTH or left[0] <= 0:
        return None
    left[0] -= 1
    if "$ref" in schema:
        return instance(_resolve(schema["$ref"], root), root, text, depth + 1, left)
    for word in ("const", "default"):
        if word in schema:
            return schema[word]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for word in ("anyOf", "oneOf"):
        if isinstance(schema.get(word), list) and schema[word]:
            return instance(schema[word][0], root, text, depth + 1, left)
    if isinstance(schema.get("allOf"), list):
        merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = (
                _resolve(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            )
            for key, value in (part or {}).items():
                if key in ("properties",) and isinstance(value, dict):
                    merged[key] = {**merged.get(key, {}), **value}
                elif key == "required" and isinstance(value, list):
                    merged[key] = [*merged.get(key, []), *value]
                else:
                    merged.setdefault(key, value)
        return instance(merged, root, text, depth + 1, left)
    kind = _type(schema)
    if kind == "object":
        properties = schema.get("properties") or {}
        names = [*properties, *[n for n in schema.get("required") or [] if n not in properties]]
        return {
            name: instance(properties.get(name, {}), root, text, depth + 1, left) for name in names
        }
    if kind == "array":
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        count = max(int(schema.get("minItems") or 0), 1)
        if isinstance(schema.get("maxItems"), int):
            count = min(count, schema["maxItems"])
        values: list = []
        while len(values) < count and left[0] > 0:
            values.append(instance(items, root, text, depth + 1, left))
        return values
    if kind in ("integer", "number"):
        return _number(schema, kind)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, text)


def _type(schema: dict) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema:
            return "array"
    return kind or "string"


def _number(schema: dict, kind: str) -> int | float:
    low = schema.get("minimum")
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = schema["exclusiveMinimum"] + 1
    value = low if isinstance(low, int | float) else 0
    high = schema.get("maximum")
    if isinstance(high, int | float) and value > high:
        value = high
    return int(value) if kind == "integer" else value


def _string(schema: dict, text: str) -> str:
    value = STRING_FORMATS.get(schema.get("format"), text or "simulated")
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) and len(value) < low:
        value += "x" * (min(low, MAX_STRING) - len(value))
    if isinstance(high, int):
        value = value[:high]
    return value


def _resolve(ref: Any, root: dict) -> Any:
    """A local reference such as #/$defs/item; anything else stands for any value."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    target: Any = root
    for part in filter(None, ref[1:].split("/")):
        if not isinstance(target, dict):
            return {}
        target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
    return target
