"""`manage.py migrate_locked`: what MIGRATE_ON_START runs in each replica."""

import io

import pytest
from django.core.management import call_command
from django.db import connection

from chatapp.core.management.commands.migrate_locked import MIGRATION_LOCK_ID


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
