import contextlib
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from django.contrib.auth import get_user_model
from django.core.files.storage import FileSystemStorage

from chatapp.teams.models import Membership, Role, Team
from chatapp.teams.services import SESSION_TEAM_KEY
from chatapp.tools.actions import fetch_listing, store_listing
from chatapp.tools.models import ToolServer
from chatapp.uploads.models import Upload
from llama_simulator import RunningSimulator
from llama_simulator.models import IMAGE_MODELS as SIM_IMAGE_MODELS
from llama_simulator.models import MODELS as SIM_MODELS
from tests.support.mcp_server import RunningToolServer, run_tool_server
from tests.support.polling import wait_for
from tests.support.simulator import MODEL, SimulatorOptions, SimulatorPool

pytest_plugins = ["tests.event_checks"]

PASSWORD = "correct-horse-battery-staple"


def pytest_addoption(parser):
    parser.addoption(
        "--docker",
        action="store_true",
        help="run the tests marked docker: the built image and the compose stack (tests/docker)",
    )


KEPT_BETWEEN_TESTS = frozenset({"django_content_type", "auth_permission"})


@pytest.fixture(scope="session", autouse=True)
def emptying_tables_by_delete():
    """PostgreSQL: a transactional test's tables are emptied by DELETE, not TRUNCATE.

    TRUNCATE of the project's tables takes about 0.3 s (new files for every table and index);
    DELETE of the few rows a test writes takes milliseconds. Django makes every foreign key
    DEFERRABLE INITIALLY DEFERRED and the flush runs in one transaction, so emptying the
    tables in any order leaves no dangling reference to check at commit. Content types and
    permissions stay: the post_migrate signal after each flush would write the same rows back.
    """
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or not tables:
            return truncate(
                self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        emptied = [table for table in tables if table not in KEPT_BETWEEN_TESTS]
        return [f"DELETE FROM {self.quote_name(table)};" for table in emptied]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "sql_flush", sql_flush)
        yield


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets its own channel layer object, as each gets its own event loop.

    The Redis layer binds its receive lock to the loop that receives first; a receive left
    pending when a test's loop closed would otherwise break every later test's sockets.
    """
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The suite creates hundreds of users; production's slow hasher is not what it tests."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def uploads_dir(monkeypatch, tmp_path):
    """Uploaded files land in the test's own directory, never in the checkout's media/."""
    location = tmp_path / "media"
    field = Upload._meta.get_field("file")
    monkeypatch.setattr(field, "storage", FileSystemStorage(location=location))
    return location


@pytest.fixture
def make_user(db):
    def make(username: str, **extra):
        return get_user_model().objects.create_user(
            username=username, email=f"{username}@example.com", password=PASSWORD, **extra
        )

    return make


@pytest.fixture
def site_admin(make_user):
    """The first account: created before the others so it is the site admin."""
    return make_user("siteadmin")


@pytest.fixture
def team(db, site_admin):
    return Team.objects.create(name="Acme")


@pytest.fixture
def owner(make_user, team):
    user = make_user("olivia")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    return user


@pytest.fixture
def admin_member(make_user, team):
    user = make_user("adam")
    Membership.objects.create(team=team, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def member(make_user, team):
    user = make_user("max")
    Membership.objects.create(team=team, user=user, role=Role.MEMBER)
    return user


@pytest.fixture
def outsider(make_user, site_admin):
    return make_user("eve")


def client_for(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def owner_client(client, owner):
    return client_for(client, owner)


@pytest.fixture
def owner_in_team(owner_client, team):
    """The owner's client, with the Acme team as the session's current team."""
    session = owner_client.session
    session[SESSION_TEAM_KEY] = team.pk
    session.save()
    return owner_client


@pytest.fixture
def member_client(client, member):
    return client_for(client, member)


@pytest.fixture
def outsider_client(client, outsider):
    return client_for(client, outsider)


# ---- the Llama API simulator (tests/support/simulator.py) -----------------------------------


@pytest.fixture(scope="session")
def simulators() -> Iterator[SimulatorPool]:
    pool = SimulatorPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def simulator_options() -> SimulatorOptions:
    """The simulator a test gets: override in a folder's conftest (or a module) to change it."""
    return SimulatorOptions()


@pytest.fixture
def sim(request, simulators, simulator_options) -> RunningSimulator:
    """The simulator for these options, with no requests or `times=` counters from other tests."""
    server = simulators.get(simulator_options)
    if simulator_options.wait_for_idle and server.active_streams:
        # Streams an earlier test left open (a stall its client never left, a client whose
        # event loop ended) are its leftovers: ended here, at their next token or at once.
        server.end_streams()
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not server.active_streams, "earlier streams to end", seconds=5)
    server.reset()
    server.app.api_key = simulator_options.api_key
    server.app.models, server.app.image_models = SIM_MODELS, SIM_IMAGE_MODELS  # a test may swap
    if simulator_options.site_provider:
        settings = request.getfixturevalue("settings")
        settings.LLAMA_API_BASE_URL = server.native_url
        settings.LLAMA_API_KEY = simulator_options.api_key
        settings.LLAMA_API_PROTOCOL = "llama"
        settings.LLAMA_DEFAULT_MODEL = MODEL
    return server


# ---- a real MCP tool server (tests/support/mcp_server.py) ----------------------------------


@pytest.fixture
def mcp_server() -> Iterator[RunningToolServer]:
    """A fresh MCP server on a loopback port: `.url`, `.calls`, `.stop()`."""
    with run_tool_server() as server:
        yield server


@pytest.fixture
def team_tool_server(settings, team, owner, mcp_server):
    """mcp_server added to `team` as a tool server (loopback allowed), its tools listed."""
    settings.LLAMA_ALLOW_PRIVATE_PROVIDER_URLS = True
    server = ToolServer.objects.create(
        team=team, name="helpdesk", url=mcp_server.url, created_by=owner
    )
    store_listing(server, async_to_sync(fetch_listing)(mcp_server.url, "", server.timeout))
    assert server.is_up, server.last_error
    return server
