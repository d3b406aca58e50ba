from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand

from chatapp.chat import reaper
from chatapp.core.management.arguments import positive_number

TEN_YEARS_IN_SECONDS = 10 * 365 * 24 * 3600


class Command(BaseCommand):
    help = "Mark answers left streaming by a server process that died as interrupted."

    def add_arguments(self, parser):
        parser.add_argument(
            "--max-age",
            type=positive_number("seconds", TEN_YEARS_IN_SECONDS),
            default=None,
            help="Seconds without a heartbeat before an answer counts as abandoned "
            "(default: CHAT_STALE_GENERATION_SECONDS).",
        )

    def handle(self, *args, max_age=None, **options):
        counts = reaper.reap_stale_generations(max_age)
        async_to_sync(reaper.announce)(counts["abandoned"])
        self.stdout.write(
            f"Checked {counts['checked']} stale streaming answers;"
            f" marked {counts['interrupted']} interrupted."
        )
