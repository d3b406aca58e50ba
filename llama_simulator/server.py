"""Serving the simulator with uvicorn: in the foreground, or in a thread for tests."""

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

from .app import Simulator

SIMULATED_CUT_LOG = "ASGI callable returned without completing response."


class _HideSimulatedCuts(logging.Filter):
    """A `cut` fault drops the connection on purpose; uvicorn would log it as an app bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != SIMULATED_CUT_LOG


def _config(app: Simulator, log_level: str, **options) -> uvicorn.Config:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideSimulatedCuts) for f in logger.filters):
        logger.addFilter(_HideSimulatedCuts())
    return uvicorn.Config(
        app,
        lifespan="off",
        access_log=False,  # a log line per request would cost more than the stream itself
        log_level=log_level,
        timeout_graceful_shutdown=2,
        **options,
    )


def serve(host: str, port: int, app: Simulator) -> None:
    """Run in the foreground until Ctrl+C or SIGTERM (the management command)."""
    # uvicorn shuts down on the signal, then raises it again: a KeyboardInterrupt by then is
    # the end of a clean stop, not an error worth a traceback.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(_config(app, "info", host=host, port=port)).run()


class RunningSimulator:
    """A simulator serving in a background thread; URLs and what it received."""

    def __init__(self, app: Simulator, port: int):
        self.app = app
        self.base_url = f"http://127.0.0.1:{port}"
        self.native_url = self.base_url + "/v1"
        self.openai_url = self.base_url + "/compat/v1"

    @property
    def requests(self) -> list[dict]:
        """Chat request bodies received, oldest first."""
        return list(self.app.requests)

    @property
    def moderations(self) -> list[dict]:
        """Moderation request bodies (POST /moderations and Guard model chats), oldest first."""
        return list(self.app.moderations)

    @property
    def calls(self) -> dict[str, int]:
        """API calls received by method and route, e.g. {"GET /models": 2}."""
        return dict(self.app.calls)

    @property
    def active_streams(self) -> int:
        return self.app.active_streams

    def reset(self) -> None:
        """Forget recorded requests and `times=` counters."""
        self.app.reset()

    def end_streams(self) -> None:
        """End every open stream and stall, as if each client had gone (from any thread)."""
        if self.app.loop is not None:
            self.app.loop.call_soon_threadsafe(self.app.close)


@contextlib.contextmanager
def run_simulator(
    *,
    tokens_per_second: float = 200.0,
    first_token_delay: float = 0.0,
    api_key: str | None = None,
) -> Iterator[RunningSimulator]:
    """Serve a fresh simulator on an ephemeral loopback port for the duration of the block."""
    app = Simulator(
        tokens_per_second=tokens_per_second, first_token_delay=first_token_delay, api_key=api_key
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(_config(app, "warning"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="llama-simulator", daemon=True
    )
    thread.start()
    try:
        _wait_until_started(server, thread)
        yield RunningSimulator(app, sock.getsockname()[1])
    finally:
        if app.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                app.loop.call_soon_threadsafe(app.close)
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _wait_until_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Llama API simulator did not start")
        time.sleep(0.01)
