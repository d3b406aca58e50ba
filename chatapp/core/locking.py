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
        _lock(rows, no_key)


def locked_if_there(rows: QuerySet, no_key: bool = False) -> bool:
    """Lock the rows (lock_rows), then whether any is still there: one deleted before the lock
    is seen gone, one deleted after waits for this transaction.

    On PostgreSQL the locking statement answers that itself: it skips a row deleted before it,
    and one deleted while it waited (read committed reads the row again once its lock is free).
    """
    if connections[rows.db].features.has_select_for_update:
        return _lock(rows, no_key) > 0
    return rows.exists()


def _lock(rows: QuerySet, no_key: bool) -> int:
    return len(rows.select_for_update(no_key=no_key).only("pk"))
