"""The Llama API simulators of a test session: one serving thread per set of options, started
the first time a test asks for it and stopped at the end of the session.

Tests take one through the `sim` fixture (tests/conftest.py); a folder or module picks its
options by overriding the `simulator_options` fixture. Fixtures that live for the whole
session (a live server pointed at the simulator) ask the pool with the same options.
"""

import contextlib
from dataclasses import dataclass

from llama_simulator import RunningSimulator, run_simulator
from llama_simulator.models import MODELS

MODEL = MODELS[0]


@dataclass(frozen=True)
class SimulatorOptions:
    tokens_per_second: float = 2000.0
    first_token_delay: float = 0.0
    # The only key it accepts (a test may swap `sim.app.api_key`; the next test gets this back).
    api_key: str = "sim-key-for-the-test-suite"
    # Also make it the site's Llama API for the test (settings LLAMA_API_*).
    site_provider: bool = False
    # Wait for streams earlier tests closed to end, so `active_streams` counts this test's
    # only. Off for live-server suites: their answers outlive the page that asked for them.
    wait_for_idle: bool = True


class SimulatorPool:
    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._running: dict[tuple[float, float, str], RunningSimulator] = {}

    def get(self, options: SimulatorOptions) -> RunningSimulator:
        key = (options.tokens_per_second, options.first_token_delay, options.api_key)
        if key not in self._running:
            self._running[key] = self._stack.enter_context(
                run_simulator(
                    tokens_per_second=options.tokens_per_second,
                    first_token_delay=options.first_token_delay,
                    api_key=options.api_key,
                )
            )
        return self._running[key]

    def close(self) -> None:
        self._stack.close()
