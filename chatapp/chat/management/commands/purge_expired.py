from django.core.management.base import BaseCommand
from django.utils import timezone

from chatapp.chat.actions.retention import purge_expired
from chatapp.core.words import counted


class Command(BaseCommand):
    help = (
        "Delete the conversations each team's retention policy says must go (pinned ones and"
        " teams under legal hold are kept) and expired temporary chats; each team's purge is"
        " recorded in its audit trail. Safe to run as often as you like."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be deleted; delete nothing."
        )

    def handle(self, *args, dry_run=False, **options):
        purged, temporary = purge_expired(timezone.now(), dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        for team in purged:
            self.stdout.write(
                f"{verb} {counted(team.conversations, 'conversation')} of team {team.team_id}"
                f" ({team.team_name}) untouched for {counted(team.days, 'day')}"
                f" (since before {team.cutoff:%Y-%m-%d %H:%M} UTC)."
            )
        total = sum(team.conversations for team in purged)
        self.stdout.write(
            f"{verb} {counted(total, 'conversation')} in {counted(len(purged), 'team')}"
            f" and {counted(temporary, 'expired temporary chat')}."
        )
