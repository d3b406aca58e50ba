"""Checks on a team's saved JSON schemas: a JSON Schema (Draft 2020-12) of bounded size."""

import json
import re
from collections.abc import Iterator
from typing import Any

import re2
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing._core import Resolver
from referencing.jsonschema import DRAFT202012

from chatapp.teams.datafilter import compile_pattern

MAX_SCHEMA_BYTES = 16_384
# OpenAI's rule for response_format.json_schema.name, which the schema's name becomes.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NAME_RULE = "1 to 64 letters, digits, _ or -"


def name_problem(name: str) -> str | None:
    if not NAME_PATTERN.match(name):
        return f"A schema name is {NAME_RULE} (it is sent to the model as the format's name)."
    return None


def schema_problem(schema: Any) -> str | None:
    """Why `schema` cannot be saved (a sentence), or None when it is a usable JSON Schema."""
    try:
        return _problem(schema)
    except RecursionError:  # the checks walk the schema; a few hundred levels of JSON stop them
        return "The schema is nested too deeply to check."


def parameters_problem(schema: Any) -> str | None:
    """Why a function's `parameters` (sent by an API client) cannot go upstream, or None.
    Not kept, so no size limit but the request's, and a NUL goes escaped as any text does."""
    try:
        return _as_json(schema)[1] or _not_a_schema(schema)
    except RecursionError:
        return "The schema is nested too deeply to check."


def ref_loop(schema: dict) -> str | None:
    """The $ref on a loop that checking an answer would follow forever (see _ref_cycle), or
    None: for a schema saved before such loops were refused."""
    try:
        return None if next(_refs_to_nothing(schema), None) else _ref_cycle(schema)
    except RecursionError:
        return None


def _problem(schema: Any) -> str | None:
    data, problem = _as_json(schema)
    if problem:
        return problem
    if b"\\u0000" in data:  # JSON writes a NUL escaped, whatever ensure_ascii says
        return "The schema holds a NUL character: remove it."
    if len(data) > MAX_SCHEMA_BYTES:
        return f"The schema is {len(data):,} bytes; the limit is {MAX_SCHEMA_BYTES:,}: shorten it."
    if outside := next(_refs_outside(schema), None):
        return (
            f"The schema refers outside itself ({outside[:100]}): a $ref here points inside"
            ' the schema, as "#/$defs/step" does; copy what it refers to into $defs.'
        )
    if slow := next((p for p in _patterns(schema) if not _linear(p)), None):
        return (
            f"The schema's pattern {slow[:100]!r} uses what answers cannot be checked with"
            " (lookaround or a backreference): answers are matched in time linear in their"
            " length (RE2), so write it without."
        )
    if problem := _not_a_schema(schema):
        return problem
    if dangling := next(_refs_to_nothing(schema), None):
        return (
            f"The schema's $ref {dangling[:100]!r} points to nothing in it: name one of its"
            ' parts, as "#/$defs/step" names "step" under "$defs".'
        )
    if looping := _ref_cycle(schema):
        return (
            f"The schema's $ref {looping[:100]!r} leads back to itself without a step into the"
            " answer (a property or an item), so checking an answer would never end: let it"
            ' refer to the schema from under "properties" or "items", as a tree\'s children do.'
        )
    return None


def _patterns(value: Any) -> Iterator[str]:
    """The schema's `pattern`s and `patternProperties` names, which answers are matched with."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "pattern" and isinstance(item, str):
                yield item
                continue
            if key == "patternProperties" and isinstance(item, dict):
                yield from (name for name in item if isinstance(name, str))
            yield from _patterns(item)
    elif isinstance(value, list):
        for item in value:
            yield from _patterns(item)


def _linear(pattern: str) -> bool:
    try:
        compile_pattern(pattern)
    except re2.error:
        return False
    return True


def _refs_outside(value: Any) -> Iterator[str]:
    """$ref and $dynamicRef values that do not start with #: answers are checked against the
    schema alone, so anything else cannot be checked (nothing is fetched)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("$ref", "$dynamicRef") and isinstance(item, str):
                if not item.startswith("#"):
                    yield item
            else:
                yield from _refs_outside(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs_outside(item)


def _subschemas(schema: dict) -> Iterator[tuple[dict, Resolver]]:
    """Every object in the schema, with the resolver its $ref values are read by (relative to
    the nearest $id, as answers are checked)."""

    def walk(value: Any, resolver: Resolver) -> Iterator[tuple[dict, Resolver]]:
        if isinstance(value, dict):
            if isinstance(value.get("$id"), str):
                resolver = resolver.in_subresource(DRAFT202012.create_resource(value))
            yield value, resolver
            for item in value.values():
                yield from walk(item, resolver)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item, resolver)

    yield from walk(schema, Registry().resolver_with_root(DRAFT202012.create_resource(schema)))


def _refs_to_nothing(schema: dict) -> Iterator[str]:
    """$ref and $dynamicRef values nothing in the schema answers to (found as answers are
    checked: relative to the nearest $id): every answer would go unchecked."""
    for value, resolver in _subschemas(schema):
        for key in ("$ref", "$dynamicRef"):
            ref = value.get(key)
            if isinstance(ref, str) and not _resolves(resolver, ref):
                yield ref


# Keywords whose subschemas apply to the very value their schema checks (not to a part of it).
_SAME_VALUE_ONE = ("not", "if", "then", "else")
_SAME_VALUE_LIST = ("allOf", "anyOf", "oneOf")


def _ref_cycle(schema: dict) -> str | None:
    """A $ref or $dynamicRef on a loop of subschemas that all check one value (through
    allOf, not, if, another $ref...): checking any answer would follow it forever, where a
    loop through `properties` or `items` goes one level into the answer each time, and ends.
    Run once every $ref resolves (`_refs_to_nothing`)."""
    steps: dict[int, list[tuple[int, str | None]]] = {}  # subschema -> (subschema, $ref) it applies
    for value, resolver in _subschemas(schema):
        applied: list[tuple[Any, str | None]] = [(value.get(key), None) for key in _SAME_VALUE_ONE]
        for key in _SAME_VALUE_LIST:
            if isinstance(value.get(key), list):
                applied += [(item, None) for item in value[key]]
        if isinstance(value.get("dependentSchemas"), dict):
            applied += [(item, None) for item in value["dependentSchemas"].values()]
        for key in ("$ref", "$dynamicRef"):
            if isinstance(value.get(key), str):
                applied.append((resolver.lookup(value[key]).contents, value[key]))
        steps[id(value)] = [(id(item), ref) for item, ref in applied if isinstance(item, dict)]
    done: set[int] = set()
    for start in steps:
        if start in done:
            continue
        path: list[tuple[int, str | None]] = [(start, None)]  # and the $ref followed to each
        left = [iter(steps[start])]
        while left:
            step = next(left[-1], None)
            if step is None:
                done.add(path.pop()[0])
                left.pop()
                continue
            target, ref = step
            on_path = [node for node, _ in path]
            if target in on_path:  # round again: the loop's first $ref after that subschema
                loop = [followed for _, followed in path[on_path.index(target) + 1 :]] + [ref]
                return next((followed for followed in loop if followed is not None), "#")
            if target not in done:
                path.append(step)
                left.append(iter(steps.get(target, ())))
    return None


def _resolves(resolver: Resolver, ref: str) -> bool:
    try:
        found = resolver.lookup(ref).contents
    except RecursionError:
        raise
    except Exception:  # Unresolvable, or a pointer through a value that is not a schema
        return False
    return isinstance(found, dict | bool)  # a schema, not a list or a number inside one


def _as_json(schema: Any) -> tuple[bytes, str | None]:
    """The schema as UTF-8 JSON text, or why it cannot be JSON."""
    if not isinstance(schema, dict):
        return b"", 'A schema is a JSON object, such as {"type": "object", "properties": {...}}.'
    try:
        return json.dumps(schema, ensure_ascii=False, allow_nan=False).encode(), None
    except UnicodeEncodeError:
        return b"", "The schema holds an unpaired surrogate (\\ud800-\\udfff), which is not text."
    except ValueError:  # Python reads NaN and Infinity (and 1e999) that JSON has no room for
        return b"", "The schema holds NaN or an infinite number, which JSON cannot store."


def _not_a_schema(schema: dict) -> str | None:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(part) for part in error.path) or "the top level"
        return f"Not a valid JSON Schema at {where}: {error.message[:200]}"
    return None


def parse_schema_text(text: str) -> tuple[Any, str | None]:
    """A schema typed into the team page: (the value, None) or (None, why it is refused)."""
    try:
        value = json.loads(text)
    except RecursionError:
        return None, "The schema is nested too deeply to read."
    except json.JSONDecodeError as error:
        return None, f"This is not JSON: {error.msg} (line {error.lineno}, column {error.colno})."
    except ValueError:  # an integer past Python's 4,300 digits
        return None, "The schema holds a number too long to read: shorten it."
    return value, schema_problem(value)
