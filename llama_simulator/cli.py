"""The simulator's command line, shared by `python -m llama_simulator` and the Django command."""

import argparse

from .app import Simulator
from .models import IMAGE_MODELS, MODELS
from .server import serve

DESCRIPTION = (
    "Run the Llama API simulator: the native API under /v1 and the OpenAI-compatible API "
    "under /compat/v1 (see llama_simulator/README.md for fault-injection directives)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--tokens-per-second", type=float, default=40.0)
    parser.add_argument("--first-token-delay", type=float, default=0.3, help="seconds")
    parser.add_argument(
        "--api-key",
        default=None,
        help='accept only this Bearer key (default: any key except "bad-key")',
    )
    parser.add_argument(
        "--models",
        type=_ids,
        default=MODELS,
        help="comma-separated model ids to serve, as a vLLM or Ollama server would"
        " (default: the Llama API's four)",
    )
    parser.add_argument(
        "--image-models",
        type=_ids,
        default=IMAGE_MODELS,
        help="comma-separated ids of the models that take images (default: the Llama 4 two)",
    )


def _ids(text: str) -> tuple[str, ...]:
    return tuple(filter(None, (item.strip() for item in text.split(","))))


def run(
    *,
    host: str,
    port: int,
    tokens_per_second: float,
    first_token_delay: float,
    api_key: str | None,
    models: tuple[str, ...] = MODELS,
    image_models: tuple[str, ...] = IMAGE_MODELS,
) -> None:
    app = Simulator(
        tokens_per_second=tokens_per_second,
        first_token_delay=first_token_delay,
        api_key=api_key,
        models=models,
        image_models=image_models,
    )
    print(f"Llama API simulator on http://{host}:{port}/v1 and /compat/v1", flush=True)
    serve(host, port, app)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llama_simulator", description=DESCRIPTION)
    add_arguments(parser)
    run(**vars(parser.parse_args(argv)))
