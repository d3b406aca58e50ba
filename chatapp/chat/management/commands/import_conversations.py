"""`manage.py import_conversations [FILE] [--create-missing] [--team ID] [--dry-run]`."""

import json
import sys
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from typing import TextIO

from django.core.management.base import BaseCommand, CommandError

from chatapp.chat.backup import BackupError, import_conversations
from chatapp.chat.json_stream import read_object
from chatapp.teams.models import Team


class Command(BaseCommand):
    help = (
        "Restore conversations written by export_conversations, all or nothing. Conversations "
        "already present are skipped, so running it twice is safe."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", nargs="?", default="-", help="the export (default stdin)")
        parser.add_argument(
            "--create-missing",
            action="store_true",
            help="create users (without a password) and teams the export names but this site lacks",
        )
        parser.add_argument(
            "--team",
            metavar="ID",
            type=int,
            help="put the export's shared team's conversations here",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="check and count, change nothing"
        )

    def handle(self, *args, path="-", team=None, **options) -> None:
        into_team = None
        if team is not None:
            into_team = Team.objects.filter(pk=team, personal_owner__isnull=True).first()
            if into_team is None:
                raise CommandError(f"No shared team with id {team}.")
        try:
            with self._open(path) as file:
                # Conversations are read one at a time as they are imported, not all at once.
                data = read_object(file, lazy="conversations", after=("users", "teams"))
                result = import_conversations(
                    data,
                    create_missing=options["create_missing"],
                    into_team=into_team,
                    dry_run=options["dry_run"],
                )
        except BackupError as exc:
            raise CommandError(f"{exc} Nothing was imported.") from None
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
        except json.JSONDecodeError as exc:
            raise CommandError(f"{path} is not JSON: {exc}. Nothing was imported.") from None
        except RecursionError:  # a damaged or hostile file: past the parser's or the checks'
            raise CommandError(
                f"{path} holds values nested too deeply to be an export. Nothing was imported."
            ) from None
        except UnicodeDecodeError:
            raise CommandError(
                f"{path} is not JSON in UTF-8, as export_conversations writes it: convert it,"
                " or export it again."
            ) from None
        prefix = "Dry run, nothing saved. " if options["dry_run"] else ""
        self.stdout.write(prefix + result.summary())

    def _open(self, path: str) -> ContextManager[TextIO]:
        if path != "-":
            return open(path, encoding="utf-8")
        if sys.stdin.isatty():  # nothing piped in: reading would wait for typing
            raise CommandError(
                "Name the export file, or pipe it in: import_conversations FILE,"
                " or import_conversations < FILE."
            )
        return nullcontext(sys.stdin)
