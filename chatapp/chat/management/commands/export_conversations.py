"""`manage.py export_conversations --user NAME | --team ID | --all [--output FILE]`."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chatapp.chat.backup import write_export
from chatapp.core.management.private_files import private_file
from chatapp.core.words import counted
from chatapp.teams.models import Team


class Command(BaseCommand):
    help = "Write conversations (every message and setting) as JSON, for a user, a team or all."

    def add_arguments(self, parser) -> None:
        scope = parser.add_mutually_exclusive_group(required=True)
        scope.add_argument("--user", metavar="USERNAME", help="conversations this user owns")
        scope.add_argument("--team", metavar="ID", type=int, help="conversations in this team")
        scope.add_argument("--all", action="store_true", help="every conversation")
        parser.add_argument("--output", "-o", default="-", help="file to write (default stdout)")

    def handle(self, *args, user=None, team=None, output="-", **options) -> None:
        chosen = {"user": self._user(user), "team": self._team(team)}
        if output == "-":
            result = write_export(lambda text: self.stdout.write(text, ending=""), **chosen)
        else:
            try:
                with private_file(output) as file:
                    result = write_export(file.write, **chosen)
            except OSError as exc:
                raise CommandError(f"Cannot write {output}: {exc.strerror or exc}.") from None
        self.stderr.write(
            f"Exported {counted(result.conversations, 'conversation')}"
            f" ({counted(result.messages, 'message')})."
        )
        if result.missing_files:
            self.stderr.write(
                f"{counted(len(result.missing_files), 'file')} not found in storage, left out:"
                f" {', '.join(result.missing_files)}."
            )

    def _user(self, username):
        if username is None:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        return user

    def _team(self, team_id):
        if team_id is None:
            return None
        team = Team.objects.filter(pk=team_id).first()
        if team is None:
            raise CommandError(f"No team with id {team_id}.")
        return team
