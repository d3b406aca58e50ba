from django.core.management.base import BaseCommand, CommandError

from chatapp.core.words import counted
from chatapp.teams.audit_trail import verify_chain


class Command(BaseCommand):
    help = "Check the audit trail's hash chain; fails naming the first event that does not match."

    def handle(self, *args, **options):
        checked, problem = verify_chain()
        if problem is not None:
            raise CommandError(
                f"The audit trail is broken at event {problem.event_id}: {problem.reason}."
                f" The {counted(checked, 'event')} before it"
                f" {'is' if checked == 1 else 'are'} intact."
            )
        self.stdout.write(f"The audit trail is intact: {counted(checked, 'event')} checked.")
