"""`manage.py migrate_locked`: migrate, one process at a time.

Used when MIGRATE_ON_START=1 so that several replicas starting together do not run the same
migrations at once: on PostgreSQL they queue on an advisory lock, and the ones that get it
after the first find nothing left to do. SQLite serialises writers by itself.

On PostgreSQL a migration waits at most `--lock-timeout` seconds for a table's lock
(`lock_timeout`): an ALTER TABLE waiting behind a long transaction would otherwise hold up
every query on that table queued after it, the site's included, for as long as that
transaction lasts. Past the timeout the migration is rolled back, and the command says so and
to run it again.
"""

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError, connection

# Any fixed 64-bit number, the same in every replica.
MIGRATION_LOCK_ID = 7_404_113_901
LOCK_TIMEOUT_SECONDS = 5
MAX_LOCK_TIMEOUT_SECONDS = 86_400
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout that ran out


def lock_timeout(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_LOCK_TIMEOUT_SECONDS:
        raise CommandError(
            f"--lock-timeout must be a number of seconds from 0 (no limit) to"
            f" {MAX_LOCK_TIMEOUT_SECONDS} (got {value!r})"
        )
    return int(value)


class Command(BaseCommand):
    help = "Apply migrations, waiting for any other process that is applying them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--lock-timeout",
            default=str(LOCK_TIMEOUT_SECONDS),
            help="on PostgreSQL, the seconds a migration may wait for a table's lock before it"
            f" gives up (0: no limit; default {LOCK_TIMEOUT_SECONDS})",
        )

    def handle(self, *args, **options) -> None:
        seconds = lock_timeout(options["lock_timeout"])
        if connection.vendor != "postgresql":
            call_command("migrate", interactive=False, stdout=self.stdout, stderr=self.stderr)
            return
        # Replicas wait on this one as long as it takes: the timeout is set after it.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_ID])
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, false)", [f"{seconds}s"])
            call_command("migrate", interactive=False, stdout=self.stdout, stderr=self.stderr)
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            raise CommandError(
                f"A migration waited more than {seconds} s for a lock on a table that another"
                " transaction holds (a long query, or a session left open in a transaction:"
                " pg_stat_activity shows it). It was rolled back rather than hold up every"
                " query on that table behind it; the migrations before it are applied. Run it"
                " again (a container does at its next start), at a quieter time or once that"
                " transaction ends; --lock-timeout 0 waits as long as it takes."
            ) from None
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_ID])
