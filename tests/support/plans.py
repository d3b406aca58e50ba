"""What the database plans for a query the app ran (PostgreSQL's EXPLAIN, SQLite's EXPLAIN
QUERY PLAN): lists must read their page in order from an index, not sort every row."""

from django.db import connection


def sorts_rows(sql: str) -> bool:
    """Whether the database sorts the rows this query reads, rather than reading them in
    order from an index. PostgreSQL is told to avoid sorting, as it would with many rows: it
    still sorts when no index gives the order."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_sort = off")  # ends with the test's transaction
            cursor.execute(f"EXPLAIN {sql}")
            return any("Sort" in row[0] for row in cursor.fetchall())
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return any("TEMP B-TREE" in row[-1] for row in cursor.fetchall())
