"""A database of a test server's own: a SQLite file, or a PostgreSQL database created and
dropped beside the suite's when DATABASE_URL is PostgreSQL."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


def uses_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def lock_waiters() -> int:
    """How many sessions of the suite's PostgreSQL database wait on a lock now."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else read once a transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def wait_for_lock_waiters(count: int = 1) -> None:
    """Until `count` sessions of the suite's PostgreSQL database wait on a lock: the threads a
    test started have reached the lock it holds."""
    from tests.support.polling import wait_for

    wait_for(lambda: lock_waiters() >= count, f"{count} sessions to wait on a lock")


@dataclass
class ServerDatabase:
    """A database of the servers' own: a SQLite file, or `<name>_<suffix>` on PostgreSQL."""

    url: str
    drop: Callable[[], None]


def create_database(suffix: str, tmp_dir: Path) -> ServerDatabase:
    configured = os.environ.get("DATABASE_URL", "")
    if not uses_postgres():
        return ServerDatabase(f"sqlite:///{tmp_dir / f'{suffix}.sqlite3'}", lambda: None)
    import psycopg

    parsed = urlparse(configured)
    name = f"{parsed.path.lstrip('/') or 'postgres'}_{suffix}"
    admin_url = parsed._replace(path="/postgres").geturl()

    def run(sql: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(sql)

    run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    run(f'CREATE DATABASE "{name}"')
    return ServerDatabase(
        parsed._replace(path=f"/{name}").geturl(),
        lambda: run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'),
    )
