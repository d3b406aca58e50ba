"""`manage.py migrate_locked`: what MIGRATE_ON_START runs in each replica."""

import io
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.db import connection

from chatapp.core.management.commands.migrate_locked import MIGRATION_LOCK_ID
from tests.databases import create_database, uses_postgres
from tests.deploy.files import ROOT, clean_env


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def manage(env: dict[str, str], *args: str) -> None:
    result = run_manage(env, *args)
    assert result.returncode == 0, result.stderr[-3000:]


def test_it_migrates(db):
    out = io.StringIO()
    call_command("migrate_locked", stdout=out)
    assert "No migrations to apply" in out.getvalue()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks are PostgreSQL's")
def test_it_releases_the_lock_for_the_next_replica(db):
    import psycopg

    call_command("migrate_locked", stdout=io.StringIO())
    with psycopg.connect(**connection.get_connection_params()) as other:
        taken = other.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK_ID]).fetchone()
        assert taken == (True,)
        other.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_ID])


@pytest.mark.slow
@pytest.mark.skipif(not uses_postgres(), reason="lock_timeout is PostgreSQL's")
def test_a_migration_stuck_behind_a_long_transaction_gives_up_and_says_to_retry(tmp_path):
    """Its ALTER TABLE waits for every transaction reading the table, and every query on the
    table queues behind it meanwhile: past the lock timeout it is rolled back instead, and
    the command says what happened and what to do. Run again once the table is free, it
    applies."""
    import psycopg

    database = create_database("migrate_lock_timeout", tmp_path)
    env = clean_env(SECRET_KEY="migrate-test-only", DATABASE_URL=database.url)
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "migrate", "teams", "0021", "--noinput", "-v", "0")  # 0022 adds a column
        with psycopg.connect(database.url) as reader:  # a long transaction that read the table
            reader.execute("SELECT count(*) FROM teams_budgethold")
            stuck = run_manage(env, "migrate_locked", "--lock-timeout", "1")
        assert stuck.returncode != 0
        assert "Traceback" not in stuck.stderr
        assert "waited more than 1 s for a lock" in stuck.stderr
        assert "Run it again" in stuck.stderr
        assert "Applying teams.0022_budget_hold_server_process..." in stuck.stdout

        done = run_manage(env, "migrate_locked", "--lock-timeout", "1")
        assert done.returncode == 0, done.stderr
        assert "Applying teams.0022_budget_hold_server_process..." in done.stdout
        with psycopg.connect(database.url) as reader:
            reader.execute("SELECT server_process FROM teams_budgethold")  # the column is there
    finally:
        database.drop()


@pytest.mark.parametrize("value", ["-1", "abc", "86401"])
def test_a_lock_timeout_out_of_range_is_refused_before_anything_runs(value):
    result = run_manage(
        clean_env(SECRET_KEY="migrate-test-only"), "migrate_locked", "--lock-timeout", value
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "--lock-timeout" in result.stderr
