"""`manage.py export_conversations --user NAME | --team ID | --all [--output FILE]`."""

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chatapp.chat.backup import export_conversations
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
        data = export_conversations(user=self._user(user), team=self._team(team))
        text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
        if output == "-":
            self.stdout.write(text, ending="")
        else:
            write_private(output, text)
        messages = sum(len(c["messages"]) for c in data["conversations"])
        self.stderr.write(
            f"Exported {counted(len(data['conversations']), 'conversation')}"
            f" ({counted(messages, 'message')})."
        )
        if data["missing_files"]:
            self.stderr.write(
                f"{counted(len(data['missing_files']), 'file')} not found in storage, left out:"
                f" {', '.join(data['missing_files'])}."
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


def write_private(path: str, text: str) -> None:
    try:
        with private_file(path) as file:
            file.write(text)
    except OSError as exc:
        raise CommandError(f"Cannot write {path}: {exc.strerror or exc}.") from None
