"""A user's team with its policy and provider, read with one plain statement.

Every answer a socket starts reads its team with both (`policy.RULES_RELATED`): the
session's for a new conversation, the conversation's for the next question in one.
The ORM's `select_related` query over the three tables took Django about ten times as long
to build as the database took to run it (bench/README.md), so the statement is built once a
process from the models' fields, and each row becomes the same instances, with the same
relations cached, that the ORM would return.
"""

from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model

from chatapp.teams.models import Membership, Team, TeamPolicy, TeamProvider

RELATED: tuple[type[Model], ...] = (TeamPolicy, TeamProvider)  # one-to-one on the team


@dataclass(frozen=True)
class _Part:
    model: type[Model]
    columns: list[str]
    names: list[str]  # attribute names, in the order of the columns
    converters: list[tuple[int, Any, list[Any]]]  # (column index, column, its converters)
    start: int  # its first column in the row


def team_with_rules(user: Any, team_id: int) -> Team | None:
    """The team `team_id` if the user is in it, else None. Its `policy` and `provider` are
    read with it, as `select_related("policy", "provider")` would."""
    row = _fetch("AND t.id = %s", [user.pk, team_id])
    return None if row is None else _team(row)


def first_team_with_rules(user: Any) -> Team | None:
    """The user's oldest team, with its policy and provider; None if they are in none."""
    row = _fetch("ORDER BY t.created_at, t.id LIMIT 1", [user.pk])
    return None if row is None else _team(row)


def _fetch(tail: str, params: list[Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(f"{_select()} {tail}", params)
        return cursor.fetchone()


@cache
def _parts() -> tuple[_Part, ...]:
    parts, start = [], 0
    models: tuple[type[Model], ...] = (Team, *RELATED)
    for model in models:
        fields = model._meta.concrete_fields
        converters = []
        for index, field in enumerate(fields):
            column = field.get_col(model._meta.db_table)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                converters.append((index, column, found))
        columns = [_column(f) for f in fields]
        parts.append(_Part(model, columns, [f.attname for f in fields], converters, start))
        start += len(fields)
    return tuple(parts)


@cache
def _select() -> str:
    q = connection.ops.quote_name
    aliases = ["t", "p", "r"]
    columns = ", ".join(
        f"{alias}.{q(column)}"
        for alias, part in zip(aliases, _parts(), strict=True)
        for column in part.columns
    )
    team_id = f"t.{q(_column(Team._meta.pk))}"
    joins = " ".join(
        f"LEFT JOIN {q(model._meta.db_table)} {alias}"
        f" ON {alias}.{q(_column(_team_field(model)))} = {team_id}"
        for alias, model in zip(aliases[1:], RELATED, strict=True)
    )
    member = Membership._meta
    return (
        f"SELECT {columns} FROM {q(Team._meta.db_table)} t"
        f" INNER JOIN {q(member.db_table)} m"
        f" ON m.{q(_column(member.get_field('team')))} = {team_id} {joins}"
        f" WHERE m.{q(_column(member.get_field('user')))} = %s"
    )


def _team_field(model: type[Model]) -> Any:
    return model._meta.get_field("team")


def _column(field: Any) -> str:
    return field.get_attname_column()[1]


def _team(row: tuple[Any, ...]) -> Team:
    team_part, *related_parts = _parts()
    team = _instance(team_part, row)
    for part in related_parts:
        field = _team_field(part.model)
        joined = row[part.start + part.names.index(field.attname)] is not None  # LEFT JOIN
        related = _instance(part, row) if joined else None
        # As select_related leaves them: team.policy is this row (or raises DoesNotExist).
        field.remote_field.set_cached_value(team, related)
        if related is not None:
            field.set_cached_value(related, team)
    return team


def _instance(part: _Part, row: tuple[Any, ...]) -> Any:
    values = list(row[part.start : part.start + len(part.names)])
    for index, column, converters in part.converters:
        for convert in converters:
            values[index] = convert(values[index], column, connection)
    return part.model.from_db(connection.alias, part.names, values)
