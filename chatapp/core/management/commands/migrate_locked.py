"""`manage.py migrate_locked`: migrate, one process at a time.

Used when MIGRATE_ON_START=1 so that several replicas starting together do not run the same
migrations at once: on PostgreSQL they queue on an advisory lock, and the ones that get it
after the first find nothing left to do. SQLite serialises writers by itself.
"""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

# Any fixed 64-bit number, the same in every replica.
MIGRATION_LOCK_ID = 7_404_113_901


class Command(BaseCommand):
    help = "Apply migrations, waiting for any other process that is applying them."

    def handle(self, *args, **options) -> None:
        if connection.vendor != "postgresql":
            call_command("migrate", interactive=False, stdout=self.stdout, stderr=self.stderr)
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_ID])
        try:
            call_command("migrate", interactive=False, stdout=self.stdout, stderr=self.stderr)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_ID])
