"""JSON output: the answer format a conversation asks for, and whether an answer kept to it.

A conversation's own choice (`response_format`, `json_schema`) wins; left blank, the format of
the team prompt it was started from applies. Upstream the format goes in OpenAI's shape
(`chatapp.llm` turns it into the native API's); the answer is checked once it has ended.
"""

import contextvars
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema._keywords
import jsonschema._utils
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable

from chatapp.chat.errors import ChatError
from chatapp.chat.models import Conversation, MessageStatus, related_or_none
from chatapp.teams.datafilter import compile_pattern
from chatapp.teams.json_schemas import ref_loop
from chatapp.teams.models import JsonSchema, ResponseFormat

FORMATS = tuple(ResponseFormat.values)
# An answer longer than this is not checked against a schema (reported as not checked).
MAX_CHECKED_CHARS = 1_000_000
ERROR_LENGTH = 300
# How many schema keywords checking an answer may apply: 100,000 plus two per character of the
# answer. A 1 MB list of records under a typical schema takes a quarter of one per character;
# nested anyOf branches (each tried in full when the others fail) double the work with each
# level of the answer: 16 levels took half a minute, 40 would take years.
CHECK_BASE_STEPS = 100_000
CHECK_STEPS_PER_CHAR = 2
# Where a schema's $refs are looked up: in the schema itself and nowhere else. Without it,
# jsonschema fetches any other $ref with urllib (any address, file:// too, no time limit).
SCHEMA_ITSELF: Registry = Registry()


class _LinearPatterns:
    """What jsonschema calls as `re` to match `pattern` and `patternProperties` against an
    answer: RE2, in time linear in the text, as the data filter's own patterns. Python's `re`
    backtracks: `(a+)+$` against forty a's held the thread (the database thread every socket
    shares) for hours. A pattern RE2 refuses (lookaround) raises re2.error: the answer is
    reported as not checked."""

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def _compiled(pattern: str) -> Any:
        return compile_pattern(pattern)

    @classmethod
    def search(cls, pattern: str, text: str) -> Any:
        return cls._compiled(pattern).search(text)


jsonschema._keywords.re = _LinearPatterns
jsonschema._utils.re = _LinearPatterns


class _TooMuchWork(Exception):
    pass


_steps_left: contextvars.ContextVar[list[int]] = contextvars.ContextVar("steps_left")


def _counted(keyword: Callable[..., Any]) -> Callable[..., Any]:
    def apply(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        left = _steps_left.get()
        left[0] -= 1
        if left[0] < 0:
            raise _TooMuchWork
        return keyword(validator, value, instance, schema)

    return apply


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Any:
    """uniqueItems in time linear in the list: jsonschema compares every pair of a list of
    objects (4,000 records, 50 kB of answer, took half a minute)."""
    if unique and validator.is_type(instance, "array"):
        if len({_comparable(item) for item in instance}) < len(instance):
            yield ValidationError(f"{instance!r} has non-unique elements")


def _comparable(value: Any) -> Any:
    """A hashable stand-in equal for values JSON Schema calls equal: 1 and 1.0 are, true and
    1 are not, and an object's keys have no order."""
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, list):
        return ("array", tuple(_comparable(item) for item in value))
    if isinstance(value, dict):
        return ("object", frozenset((key, _comparable(item)) for key, item in value.items()))
    if isinstance(value, str):
        return ("string", value)
    return ("number or null", value)


# Draft 2020-12 with every keyword counted against the check's steps (_steps_left).
_BoundedValidator = validators.extend(
    Draft202012Validator,
    {
        name: _counted(keyword)
        for name, keyword in {
            **Draft202012Validator.VALIDATORS,
            "uniqueItems": _unique_items,
        }.items()
    },
)


@dataclass(frozen=True)
class AnswerFormat:
    """A JSON format asked of the model (text answers have none)."""

    type: str  # "json_object" or "json_schema"
    name: str | None = None
    schema_id: int | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None  # OpenAI's json_schema.strict, as an API client sent it

    def upstream(self) -> dict[str, Any]:
        if self.type == ResponseFormat.JSON_SCHEMA:
            spec: dict[str, Any] = {"name": self.name, "schema": self.schema}
            if self.strict is not None:
                spec["strict"] = self.strict
            return {"type": "json_schema", "json_schema": spec}
        return {"type": "json_object"}

    def requested(self) -> dict[str, Any]:
        """What the streaming answer keeps, to be checked against when it ends."""
        stored: dict[str, Any] = {"type": self.type}
        if self.type == ResponseFormat.JSON_SCHEMA:
            stored.update(name=self.name, schema_id=self.schema_id, schema=self.schema)
        return stored


def requested_format(value: Any) -> tuple[str, int | None] | None:
    """A frame's `settings.response_format`: ("text" | "json_object", None) or
    ("json_schema", schema id); None when left out. ChatError for anything else."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    unknown = set(value) - {"type", "schema_id"} if isinstance(value, dict) else set()
    if kind not in FORMATS or unknown:
        raise ChatError(
            "invalid_frame",
            'settings.response_format is {"type": "text"}, {"type": "json_object"} or'
            ' {"type": "json_schema", "schema_id": <id of a team schema>}.',
            "response_format",
        )
    schema_id = value.get("schema_id")
    if kind != ResponseFormat.JSON_SCHEMA:
        if schema_id is not None:
            raise ChatError(
                "invalid_frame", "schema_id goes with the json_schema format.", "response_format"
            )
        return kind, None
    if isinstance(schema_id, bool) or not isinstance(schema_id, int) or schema_id < 1:
        raise ChatError(
            "invalid_frame", "The json_schema format needs a schema_id.", "response_format"
        )
    return kind, schema_id


def choose_format(conversation: Conversation, choice: tuple[str, int | None]) -> tuple[str, ...]:
    """Set the conversation's own format (read-only check of the schema's team); returns the
    fields that changed. A schema of another team, or none, is refused: nothing changes."""
    kind, schema_id = choice
    schema = None
    if schema_id is not None:
        schema = JsonSchema.objects.filter(pk=schema_id, team_id=conversation.team_id).first()
        if schema is None:
            raise ChatError(
                "not_found",
                "No such JSON schema in this conversation's team: pick one of the team's"
                " saved schemas.",
                "response_format",
            )
    changed = []
    if conversation.response_format != kind:
        conversation.response_format = kind
        changed.append("response_format")
    if conversation.json_schema_id != schema_id:
        conversation.json_schema = schema
        changed.append("json_schema")
    return tuple(changed)


def conversation_format(conversation: Conversation) -> AnswerFormat | None:
    """The JSON format the conversation's answers are asked for, or None for text."""
    kind, chosen_by = conversation.response_format, conversation
    if not kind:  # the format of the prompt it started from
        prompt = related_or_none(conversation, "system_prompt")
        kind = prompt.response_format if prompt else ResponseFormat.TEXT
        chosen_by = prompt  # its schema, then
    if kind == ResponseFormat.JSON_SCHEMA:
        schema = related_or_none(chosen_by, "json_schema")
        if schema is None:  # the schema was deleted: the answer is still asked to be JSON
            return AnswerFormat(ResponseFormat.JSON_OBJECT)
        return AnswerFormat(kind, schema.name, schema.pk, schema.schema)
    if kind == ResponseFormat.JSON_OBJECT:
        return AnswerFormat(kind)
    return None


def format_summary(conversation: Conversation) -> dict[str, Any]:
    """The conversation's answer format as the API shows it: {"type", "schema_id", "name"}."""
    answer_format = conversation_format(conversation)
    if answer_format is None:
        return {"type": "text", "schema_id": None, "name": None}
    return {
        "type": answer_format.type,
        "schema_id": answer_format.schema_id,
        "name": answer_format.name,
    }


def shown_format(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """A message's `format` as clients see it: the schema itself stays on the server."""
    if not stored:
        return None
    return {key: value for key, value in stored.items() if key != "schema"}


def check_answer(requested: dict[str, Any] | None, text: str, status: str) -> dict[str, Any] | None:
    """The outcome message.done carries: {"type", "valid", "error"?, "name"?, "schema_id"?}.

    None for a text answer, and for one that ended with nothing to check (failed, blocked)."""
    if not requested or status not in _CHECKED_STATUSES:
        return None
    outcome: dict[str, Any] = {"type": requested["type"]}
    if requested["type"] == ResponseFormat.JSON_SCHEMA:
        outcome.update(name=requested.get("name"), schema_id=requested.get("schema_id"))
    error = _problem(requested, text)
    outcome["valid"] = error is None
    if error is not None:
        outcome["error"] = error[:ERROR_LENGTH]
    return outcome


_CHECKED_STATUSES = (MessageStatus.COMPLETE, MessageStatus.STOPPED, MessageStatus.INTERRUPTED)


def _problem(requested: dict[str, Any], text: str) -> str | None:
    if len(text) > MAX_CHECKED_CHARS:
        return f"The answer is longer than {MAX_CHECKED_CHARS:,} characters: not checked."
    try:
        value = json.loads(text)
    except RecursionError:
        return "The answer is nested too deeply to read."
    except json.JSONDecodeError as error:
        if not text.strip():
            return "The answer is empty, not JSON."
        return f"The answer is not JSON: {error.msg} (line {error.lineno}, column {error.colno})."
    except ValueError:  # an integer past Python's 4,300 digits (JSONDecodeError is caught above)
        return "The answer holds a number too long to read: not checked."
    schema = requested.get("schema")
    if requested["type"] != ResponseFormat.JSON_SCHEMA or not isinstance(schema, dict):
        return None if isinstance(value, dict) else "The answer is JSON but not an object."
    steps = _steps_left.set([CHECK_BASE_STEPS + CHECK_STEPS_PER_CHAR * len(text)])
    try:
        validator = _BoundedValidator(schema, registry=SCHEMA_ITSELF)
        found = best_match(validator.iter_errors(value))
    except _TooMuchWork:
        return "The answer could not be checked against the schema: it takes too much work."
    except Unresolvable:  # a schema saved before such $refs were refused
        return (
            "The answer could not be checked against the schema: a $ref in it points to"
            " nothing in it (saving the schema again names it)."
        )
    except RecursionError:
        if ref_loop(schema):  # a schema saved before such loops were refused
            return (
                "The answer could not be checked against the schema: a $ref in it leads back"
                " to itself (saving the schema again names it)."
            )
        return "The answer is nested too deeply to check against the schema."
    except Exception as error:  # a schema the validator cannot use, saved by an older version
        return f"The answer could not be checked against the schema: {type(error).__name__}."
    finally:
        _steps_left.reset(steps)
    if found is None:
        return None
    where = "/".join(str(part) for part in found.absolute_path)
    return f"The answer breaks the schema at {where or 'the top level'}: {found.message}"
