"""A live server holds database connections for its database thread, not for every request
it has served: each HTTP request runs its synchronous code in a thread made for it alone."""

import os
import time
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import SIMULATOR, serve_app
from tests.databases import uses_postgres

pytestmark = pytest.mark.slow

REQUESTS = 40
# The connections of the server's long-lived threads (the database thread's among them;
# two on this suite's server), with one to spare.
KEPT_AT_MOST = 3
# A request closes its connections just after its response is sent, so the last requests'
# may still be open when the client has its answers: the count is read until it settles.
SETTLE_SECONDS = 30


@pytest.fixture(scope="module")
def server(simulators, tmp_path_factory):
    with serve_app(simulators.get(SIMULATOR), tmp_path_factory.mktemp("connections")) as live:
        yield live


def open_connections(server) -> int:
    """The server's connections to its database: PostgreSQL's sessions on it, or the server
    process's open descriptors of the SQLite file."""
    url = server.env["DATABASE_URL"]
    if uses_postgres():
        import psycopg

        name = url.rsplit("/", 1)[1]
        admin = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as admin_connection:
            row = admin_connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]
            ).fetchone()
        return row[0]
    database = Path(url.removeprefix("sqlite:///")).resolve()
    fds = Path(f"/proc/{server.process.pid}/fd")
    return sum(1 for fd in fds.iterdir() if _target(fd) == database)


def _target(fd: Path) -> Path | None:
    try:
        return Path(os.readlink(fd))
    except OSError:  # closed while listed
        return None


def test_requests_leave_no_connection_open_behind_them(server):
    with httpx.Client(base_url=server.url) as client:
        for _ in range(REQUESTS):
            assert client.get("/healthz").status_code == 200
            assert client.get("/accounts/login/").status_code == 200
    assert settled_connections(server) <= KEPT_AT_MOST


def settled_connections(server) -> int:
    """The open connections once they fall to KEPT_AT_MOST, or as many as are still open
    after SETTLE_SECONDS: connections left behind stay open however long one waits."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while (count := open_connections(server)) > KEPT_AT_MOST and time.monotonic() < deadline:
        time.sleep(0.1)
    return count
