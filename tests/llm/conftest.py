import time

import httpx
import pytest

from chatapp.llm import KNOWN_MODELS, LlamaClient, ProviderConfig
from chatapp.llm.simulator import run_simulator

MODEL = KNOWN_MODELS[0]
KEY = "sim-secret-key-1234"


@pytest.fixture(scope="session")
def sim_server():
    with run_simulator(tokens_per_second=2000, first_token_delay=0, api_key=KEY) as sim:
        yield sim


@pytest.fixture
def sim(sim_server):
    """The shared simulator, with no requests, fault counters or open streams from other tests."""
    deadline = time.monotonic() + 5
    while sim_server.active_streams and time.monotonic() < deadline:
        time.sleep(0.01)  # streams a previous test closed end at their next token
    sim_server.reset()
    sim_server.app.api_key = KEY
    return sim_server


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture(params=["llama", "openai"])
def protocol(request):
    return request.param


@pytest.fixture
def sleeps() -> list[float]:
    """The backoff delays the client asked for, in order (see make_client)."""
    return []


@pytest.fixture
def make_client(sim, http, protocol, sleeps):
    async def record_sleep(delay: float) -> None:
        sleeps.append(delay)  # the backoff clock: record the wait instead of waiting

    def make(**options) -> LlamaClient:
        base_url = sim.native_url if protocol == "llama" else sim.openai_url
        options = {"base_url": base_url, "api_key": KEY, "protocol": protocol, **options}
        return LlamaClient(ProviderConfig(**options), http=http, sleep=record_sleep)

    return make


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]
