from django.core.management.base import BaseCommand, CommandError

from chatapp.core.management.private_files import private_file
from chatapp.core.words import counted
from chatapp.teams.audit_trail import EXPORTERS, write_export


class Command(BaseCommand):
    help = "Write the whole audit trail, oldest first, as CSV or JSON (with each event's hashes)."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=sorted(EXPORTERS), default="json")
        parser.add_argument("--output", help="a file to write; standard output when omitted")

    def handle(self, *args, format: str, output: str | None, **options):
        if output is None:
            count = write_export(format, self.stdout)
        else:
            try:
                with private_file(output) as stream:
                    count = write_export(format, stream)
            except OSError as exc:
                raise CommandError(f"Cannot write {output}: {exc.strerror or exc}.") from None
        self.stderr.write(f"Exported {counted(count, 'audit event')} as {format}.")
