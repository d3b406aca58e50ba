"""Fixtures for tests that run the app as real processes: see tests/resilience/servers.py."""

import shutil
import uuid

import pytest

from chatapp.llm.simulator import run_simulator
from tests.resilience.servers import (
    REDIS_SERVER,
    SIM_KEY,
    Daphne,
    RedisServer,
    create_database,
    manage,
    new_user_session,
    server_env,
)


@pytest.fixture(scope="session")
def simulator():
    with run_simulator(tokens_per_second=50, first_token_delay=0, api_key=SIM_KEY) as sim:
        yield sim


@pytest.fixture
def sim(simulator):
    simulator.reset()
    return simulator


@pytest.fixture(scope="session")
def server_database(tmp_path_factory, simulator):
    """One migrated database for every server these tests start (dropped at the end)."""
    database = create_database("resilience", tmp_path_factory.mktemp("resilience_db"))
    try:
        manage(server_env(database.url, simulator), "migrate", "--noinput", "-v", "0")
        yield database
    finally:
        database.drop()


@pytest.fixture
def launch(tmp_path, server_database, sim):
    """launch(name, **env) starts a daphne against the shared database; all stop at the end."""
    started: list[Daphne] = []

    def start(name: str, **overrides: str) -> Daphne:
        env = server_env(server_database.url, sim, **overrides)
        server = Daphne(name, env, tmp_path / f"{name}.log")
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def session_for(server_database, sim):
    """session_for() creates a user in the servers' database and returns their session cookie."""

    def make() -> str:
        env = server_env(server_database.url, sim)
        return new_user_session(env, f"user_{uuid.uuid4().hex[:10]}")

    return make


@pytest.fixture
def private_redis(tmp_path):
    if not shutil.which(REDIS_SERVER):
        pytest.skip(f"no redis-server at {REDIS_SERVER}")
    server = RedisServer(tmp_path / "redis.log")
    try:
        yield server.start()
    finally:
        server.stop()
