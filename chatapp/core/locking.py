from django.db import connections
from django.db.models import QuerySet


def lock_rows(rows: QuerySet, no_key: bool = False) -> None:
    """Lock these rows until the transaction ends (SELECT ... FOR UPDATE), so writers taking
    the same lock, in this process or another, queue behind it. With `no_key` (FOR NO KEY
    UPDATE on PostgreSQL), rows that only refer to them (new rows with a foreign key to them)
    are still written meanwhile.

    SQLite has no row locks (the statement would only read), and its transactions here begin
    IMMEDIATE, which already queues every writer: there this does nothing.
    """
    if connections[rows.db].features.has_select_for_update:
        list(rows.select_for_update(no_key=no_key).only("pk"))
