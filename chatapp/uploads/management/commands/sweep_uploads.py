from django.core.management.base import BaseCommand, CommandError

from chatapp.uploads.actions import sweep_unattached


class Command(BaseCommand):
    help = "Delete uploaded files that were never sent with a message."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--max-age-hours",
            type=float,
            default=None,
            help="How old an unsent upload must be (default: UPLOAD_UNATTACHED_HOURS, 24).",
        )

    def handle(self, *args, max_age_hours=None, **options) -> None:
        if max_age_hours is not None and max_age_hours <= 0:
            raise CommandError("--max-age-hours must be a positive number of hours.")
        count = sweep_unattached(max_age_hours)
        self.stdout.write(f"Deleted {count} uploads that were never sent.")
