from django.core.management.base import BaseCommand

from llama_simulator.cli import DESCRIPTION, add_arguments, run


class Command(BaseCommand):
    help = DESCRIPTION

    def add_arguments(self, parser):
        add_arguments(parser)

    def handle(self, *args, **options):
        names = ("tokens_per_second", "first_token_delay", "api_key", "models", "image_models")
        run(host=options["host"], port=options["port"], **{name: options[name] for name in names})
