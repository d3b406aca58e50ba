from django.core.management.base import BaseCommand, CommandError

from chatapp.core.words import counted
from chatapp.teams.audit_trail import verify_chain


class Command(BaseCommand):
    help = "Check the audit trail's hash chain; fails naming the first event that does not match."

    def handle(self, *args, **options):
        checked, problem = verify_chain()
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
        if not checked:
            self.stdout.write("The audit trail is empty: there is nothing to check yet.")
        else:
            self.stdout.write(f"The audit trail is intact: {counted(checked, 'event')} checked.")
