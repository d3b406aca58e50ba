from django.core.management.base import BaseCommand

from llama_simulator.cli import DESCRIPTION, add_arguments, run


class Command(BaseCommand):
    help = DESCRIPTION

    def add_arguments(self, parser):
        add_arguments(parser)

    def handle(self, *args, host, port, tokens_per_second, first_token_delay, api_key, **options):
        run(
            host=host,
            port=port,
            tokens_per_second=tokens_per_second,
            first_token_delay=first_token_delay,
            api_key=api_key,
        )
