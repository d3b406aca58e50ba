import argparse
import re

from django.core.management.base import BaseCommand, CommandError

from chatapp.core.words import counted
from chatapp.teams.audit_trail import check_whole_chain
from chatapp.teams.models import AuditEvent


def event_hash(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise argparse.ArgumentTypeError(
            f"expected the 64 hexadecimal characters of an event's hash, not {text!r}"
        )
    return text.lower()


class Command(BaseCommand):
    help = (
        "Check the audit trail's hash chain; fails naming the first event that does not match."
        " With --expect, also fails unless the event a previous check named newest is still there."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--expect",
            metavar="HASH",
            type=event_hash,
            help="the newest event's hash an earlier run printed: events removed from the end"
            " of the trail leave an intact chain, and only this shows them",
        )

    def handle(self, *args, expect: str | None = None, **options):
        checked, problem, newest = check_whole_chain()
        if problem is not None:
            verb = "is" if checked == 1 else "are"
            before = (
                f"The {counted(checked, 'event')} before it {verb} intact."
                if checked
                else "It is the first event."
            )
            raise CommandError(
                f"The audit trail is broken at event {problem.event_id}: {problem.reason}. {before}"
            )
        if expect and not AuditEvent.objects.filter(hash=expect).exists():
            raise CommandError(
                f"No event has the hash {expect}: events were removed from the end of the trail"
                f" since the check that printed it (or the trail was replaced). The"
                f" {counted(checked, 'event')} left are intact."
            )
        if newest is None:
            self.stdout.write("The audit trail is empty: there is nothing to check yet.")
        else:
            self.stdout.write(
                f"The audit trail is intact: {counted(checked, 'event')} checked."
                f" The newest is event {newest.pk}, hash {newest.hash}."
            )
