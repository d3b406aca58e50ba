from django.core.management.base import BaseCommand

from chatapp.llm.simulator import Simulator, serve


class Command(BaseCommand):
    help = (
        "Run the Llama API simulator: the native API under /v1 and the OpenAI-compatible API "
        "under /compat/v1 (see chatapp/llm/README.md for fault-injection directives)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8100)
        parser.add_argument("--tokens-per-second", type=float, default=40.0)
        parser.add_argument("--first-token-delay", type=float, default=0.3, help="seconds")
        parser.add_argument(
            "--api-key",
            default=None,
            help='accept only this Bearer key (default: any key except "bad-key")',
        )

    def handle(self, *args, host, port, tokens_per_second, first_token_delay, api_key, **options):
        app = Simulator(
            tokens_per_second=tokens_per_second,
            first_token_delay=first_token_delay,
            api_key=api_key,
        )
        self.stdout.write(f"Llama API simulator on http://{host}:{port}/v1 and /compat/v1")
        serve(host, port, app)
