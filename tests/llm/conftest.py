import httpx
import pytest

from chatapp.llm import KNOWN_MODELS, LlamaClient, ProviderConfig
from tests.support.simulator import SimulatorOptions

MODEL = KNOWN_MODELS[0]
KEY = "sim-secret-key-1234"


@pytest.fixture(scope="session")
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(tokens_per_second=2000, api_key=KEY)


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
