from django.core.management.base import BaseCommand

from chatapp.core.management.arguments import positive_number
from chatapp.uploads.actions import sweep_unattached

TEN_YEARS_IN_HOURS = 10 * 365 * 24


class Command(BaseCommand):
    help = "Delete uploaded files that were never sent with a message."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--max-age-hours",
            type=positive_number("hours", TEN_YEARS_IN_HOURS),
            default=None,
            help="How old an unsent upload must be (default: UPLOAD_UNATTACHED_HOURS, 24).",
        )

    def handle(self, *args, max_age_hours=None, **options) -> None:
        count = sweep_unattached(max_age_hours)
        self.stdout.write(f"Deleted {count} uploads that were never sent.")
