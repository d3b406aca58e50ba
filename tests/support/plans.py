"""What the database plans for a query the app ran (PostgreSQL's EXPLAIN, SQLite's EXPLAIN
QUERY PLAN): lists must read their page in order from an index, not sort every row, and a
query must find its rows by an index, not read every other row of the table too."""

import re

from django.db import connection


def plan(sql: str) -> list[str]:
    """The steps of the database's plan for this query. PostgreSQL is told to avoid sorting
    and reading whole tables, as it would with many rows: it still does when no index gives
    the order or finds the rows."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Both end with the test's transaction.
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}")
            return [row[0] for row in cursor.fetchall()]
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return [row[-1] for row in cursor.fetchall()]


def sorts_rows(sql: str) -> bool:
    """Whether the database sorts the rows this query reads, rather than reading them in
    order from an index."""
    sorting = "Sort" if connection.vendor == "postgresql" else "TEMP B-TREE"
    return any(sorting in step for step in plan(sql))


def finds_rows_by(sql: str, column: str) -> bool:
    """Whether the database finds the rows this query reads by `column` in an index, rather
    than reading others in order and leaving them out (one team's rows among everyone's)."""
    if connection.vendor == "postgresql":  # "(team_id = 1)", "((action)::text = ...)"
        condition = re.compile(rf"\(\(?{column}\)?(::\w+)? [=<>]")
        return any("Index Cond:" in step and condition.search(step) for step in plan(sql))
    condition = re.compile(rf"[( ]{column}[=<>]")  # "(team_id=? AND rowid<?)"
    return any(step.startswith("SEARCH") and condition.search(step) for step in plan(sql))
