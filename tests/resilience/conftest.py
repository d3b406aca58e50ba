"""Fixtures for the fault tests.

In-process tests use the chat suite's fixtures (connect, sim, ...); tests that run the app as
real processes use launch, session_for and private_redis (see tests/resilience/servers.py),
against the same simulator.
"""

import shutil
import uuid

import pytest

from tests.chat import conftest as chat
from tests.databases import create_database
from tests.resilience.servers import (
    REDIS_SERVER,
    Daphne,
    RedisServer,
    manage,
    new_user_session,
    server_env,
)

# The chat suite's simulator (one for every test here) and `connect` for in-process sockets.
simulator_options, connect = chat.simulator_options, chat.connect


@pytest.fixture(scope="session")
def server_database(tmp_path_factory, simulators):
    """One migrated database for every server these tests start (dropped at the end)."""
    database = create_database("resilience", tmp_path_factory.mktemp("resilience_db"))
    try:
        upstream = simulators.get(chat.SIMULATOR)
        manage(server_env(database.url, upstream), "migrate", "--noinput", "-v", "0")
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
