"""Browser tests: real Chromium (Playwright) against a real daphne serving the app.

What the fixtures give you (all documented below, reuse them for end-to-end suites):

- `sim` (per test): the Llama API simulator the live servers use (`SIMULATOR`, from the
  `simulators` of tests/conftest.py), its recorded requests cleared. Slow an answer down from
  the question itself: "[sim:pace tps=5] ..." or "[sim:long tokens=300 ] ..." (see
  llama_simulator/README.md).
- `app_server` (session): a daphne subprocess serving chatapp.asgi:application on a free
  loopback port (bound by this process and handed over as a file descriptor: no port race),
  against its own migrated database: a file SQLite DB by default, or a fresh
  `<name>_browser` PostgreSQL database when DATABASE_URL is postgres (REDIS_URL is passed
  through, so the channel layer matches the run). DEBUG is off, as in production.
  `app_server.url`, `app_server.run_python(code)` (Django code run in a long-lived shell
  process against that DB, returns what it printed), `app_server.create_user(username)`,
  `app_server.log_tail()`. `serve_app(upstream, tmp_dir)` starts another such server on a
  database of its own, for a test that needs an empty site (no accounts yet).
- `tool_server` (module): a real MCP tool server (tests/support/mcp_server.py);
  `tools_app_server` (module): a live site that allows its loopback address, for a module to
  take as its `app_server`.
- `browser` (module): Chromium from /usr/bin/chromium (or $CHROMIUM), headless.
- `context` / `page` (per test): a fresh browser context (desktop viewport, base_url set), and
  a page whose console errors, page errors and off-site requests are recorded in
  `page_watch`. A failing test leaves a screenshot in the screenshot directory.
- `user` (per test): a new account (unique name, password PASSWORD) in the live server's DB;
  every test gets its own user, so tests never see each other's conversations.
- `logged_in_page` (per test): `page`, signed in as `user` through the login form, on `/` with
  the chat websocket open. `phone_page`: the same at phone width, in a context of its own.
- `screenshot(page, name)`: save a PNG into $BROWSER_SCREENSHOTS (default: a pytest temp dir)
  and return its path.

Helpers for driving the chat page (log_in, ChatPage) live in tests/browser/chat_page.py.
Mark each browser test module `pytestmark = pytest.mark.browser`. Browser tests never use
pytest-django's `db` (the server has its own database): seed data with app_server.run_python.
Run: `.venv/bin/python -m pytest -m browser` (or `tests/browser`); `-m "not browser"` skips them.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import expect

from chatapp.llm import KNOWN_MODELS
from llama_simulator import RunningSimulator
from tests.browser.chat_page import PASSWORD, BrowserUser, log_in
from tests.databases import create_database
from tests.support.mcp_server import RunningToolServer, run_tool_server
from tests.support.ports import listening_socket, wait_for_http
from tests.support.simulator import SimulatorOptions

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SIM_KEY = "sim-browser-key-1234"
MODEL = KNOWN_MODELS[0]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Answers stream slowly enough to watch them grow; a test can ask for its own pace. Answers go
# on after the page that asked has gone, so `sim` does not wait for earlier streams to end.
SIMULATOR = SimulatorOptions(tokens_per_second=60, api_key=SIM_KEY, wait_for_idle=False)
# An upper bound for anything the page waits on; never an expectation of speed.
WAIT_MS = 20_000
REPORT_KEY = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell a failed test at teardown."""
    report = yield
    item.stash.setdefault(REPORT_KEY, {})[report.when] = report
    return report


# ---- the upstream and the server ----------------------------------------------------------


@pytest.fixture(scope="session")
def simulator_options() -> SimulatorOptions:
    return SIMULATOR


class DjangoShell:
    """A long-lived Django process against the live server's database (django_worker.py)."""

    def __init__(self, env: dict[str, str]):
        self.process = subprocess.Popen(
            [PYTHON, "-m", "tests.browser.django_worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, code: str) -> str:
        self.process.stdin.write(json.dumps({"code": code}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the Django shell of the browser tests exited")
        reply = json.loads(line)
        if not reply["ok"]:
            raise RuntimeError(f"Django code failed:\n{reply['error']}")
        return reply["stdout"]

    def close(self) -> None:
        """Closing stdin ends it. Every reply has been read by then, so nothing is lost when its
        exit (Python tearing down all Django loaded, seconds on a busy machine) is cut short."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class LiveServer:
    url: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)
    shell: DjangoShell | None = field(default=None, repr=False)
    password_hashes: dict[str, str] = field(default_factory=dict, repr=False)

    def run_python(self, code: str) -> str:
        """Run Python with Django set up against the live server's database; return stdout."""
        if self.shell is None:
            self.shell = DjangoShell(self.env)
        return self.shell.run(code)

    def create_user(self, username: str, password: str = PASSWORD) -> None:
        # Hash each password once per session: hashing is deliberately slow.
        if password not in self.password_hashes:
            code = (
                "from django.contrib.auth.hashers import make_password\n"
                f"print(make_password({password!r}))"
            )
            self.password_hashes[password] = self.run_python(code).strip()
        self.run_python(
            "from django.contrib.auth import get_user_model\n"
            f"get_user_model().objects.create(username={username!r}, "
            f"password={self.password_hashes[password]!r})"
        )

    def add_tool_server(self, username: str, url: str) -> int:
        """The MCP server at `url` becomes the tool server of the user's personal team, its
        tools listed; returns the team's id. Logging is off meanwhile: the worker answers on
        stdout, where the site logs."""
        return int(
            self.run_python(
                "import logging\n"
                "logging.disable(logging.CRITICAL)\n"
                "from asgiref.sync import async_to_sync\n"
                "from django.contrib.auth import get_user_model\n"
                "from chatapp.teams.actions import ensure_personal_team\n"
                "from chatapp.tools.actions import fetch_listing, store_listing\n"
                "from chatapp.tools.models import ToolServer\n"
                f"owner = get_user_model().objects.get(username={username!r})\n"
                "team = ensure_personal_team(owner)\n"
                f"server = ToolServer.objects.create(team=team, name='helpdesk', url={url!r})\n"
                "store_listing(server, async_to_sync(fetch_listing)(server.url, '', 30))\n"
                "assert server.is_up, server.last_error\n"
                "logging.disable(logging.NOTSET)\n"
                "print(team.pk)\n"
            ).strip()
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_until_serving(server: LiveServer) -> None:
    try:
        wait_for_http(server.url + "/healthz", server.process, "daphne")
    except (RuntimeError, TimeoutError) as exc:
        raise RuntimeError(f"{exc}:\n{server.log_tail()}") from None


@contextmanager
def serve_app(
    upstream: RunningSimulator,
    tmp_dir: Path,
    application: str = "chatapp.asgi:application",
    extra_env: dict[str, str] | None = None,
) -> Iterator[LiveServer]:
    """A daphne serving the app on a freshly migrated database of its own (see app_server);
    `application` names another ASGI app to serve (one set up for a suite, as a module path),
    `extra_env` adds settings."""
    # One database per server (tmp_dir names are unique in a run): suites may run several.
    database = create_database(f"browser_{tmp_dir.name}", tmp_dir)
    env = {
        **os.environ,
        "DEBUG": "0",
        "DATABASE_URL": database.url,
        "MEDIA_ROOT": str(tmp_dir / "media"),
        "LLAMA_API_KEY": SIM_KEY,
        "LLAMA_API_BASE_URL": upstream.native_url,
        "LLAMA_API_PROTOCOL": "llama",
        "LLAMA_DEFAULT_MODEL": MODEL,
        "LLAMA_OFFLINE_DEMO": "0",
        "STATIC_MANIFEST": "0",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    listener = listening_socket()
    port = listener.getsockname()[1]
    log_path = tmp_dir / "daphne.log"
    server = LiveServer(url=f"http://127.0.0.1:{port}", env=env, log_path=log_path)
    with log_path.open("w") as log:
        server.process = subprocess.Popen(
            [PYTHON, "-m", "chatapp.core.server", "--fd", str(listener.fileno()), application],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
        )
    listener.close()  # daphne holds its own copy of the socket
    try:
        wait_until_serving(server)
        yield server
    finally:
        if server.shell is not None:
            server.shell.close()
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
        database.drop()


@pytest.fixture(scope="session")
def app_server(simulators, tmp_path_factory):
    with serve_app(simulators.get(SIMULATOR), tmp_path_factory.mktemp("app_server")) as server:
        yield server


@pytest.fixture(scope="module")
def tool_server() -> Iterator[RunningToolServer]:
    """get_weather, create_ticket (changes things: asks first), slow_lookup, broken."""
    with run_tool_server() as server:
        yield server


@pytest.fixture(scope="module")
def tools_app_server(simulators, tmp_path_factory):
    """A live site for a module's tool servers: their loopback address is allowed. A module
    makes it its `app_server`."""
    allow = {"LLAMA_ALLOW_PRIVATE_PROVIDER_URLS": "1"}
    tmp_dir = tmp_path_factory.mktemp("tools_app")
    with serve_app(simulators.get(SIMULATOR), tmp_dir, extra_env=allow) as server:
        yield server


# ---- the browser --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not shutil.which(path):
        pytest.skip(f"no Chromium at {path} (set CHROMIUM to its path)")
    return path


# Module scope on purpose: while Playwright's sync API is alive, an event loop runs in this
# thread and Django refuses synchronous database work, so it must stop before other modules'
# tests (which use pytest-django's database) run.
@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    configured = os.environ.get("BROWSER_SCREENSHOTS")
    path = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def screenshot(screenshot_dir):
    def take(page, name: str, *, full_page: bool = False) -> Path:
        path = screenshot_dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


@pytest.fixture
def context(browser, app_server):
    ctx = browser.new_context(base_url=app_server.url, viewport=DESKTOP)
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    ctx.close()


@pytest.fixture(autouse=True)
def generous_expect_timeout():
    """`expect` waits as long as every other wait here: a busy CI machine is not a failure."""
    expect.set_options(timeout=WAIT_MS)
    yield
    expect.set_options(timeout=5_000)  # Playwright's default, for the other suites


@dataclass
class PageWatch:
    """What a page did that a test may want to forbid: errors and requests to other origins."""

    origin: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    offsite_requests: list[str] = field(default_factory=list)

    def on_request(self, request) -> None:
        if not request.url.startswith((self.origin, "data:", "blob:")):
            self.offsite_requests.append(request.url)


@pytest.fixture
def page_watch(app_server) -> PageWatch:
    return PageWatch(origin=app_server.url)


@pytest.fixture
def page(context, page_watch, request, screenshot):
    pg = context.new_page()
    pg.on(
        "console",
        lambda message: message.type == "error" and page_watch.console_errors.append(message.text),
    )
    pg.on("pageerror", lambda error: page_watch.page_errors.append(str(error)))
    pg.on("request", page_watch.on_request)
    yield pg
    report = request.node.stash.get(REPORT_KEY, {}).get("call")
    if report is not None and report.failed and not pg.is_closed():
        path = screenshot(pg, f"FAILED-{request.node.name}")
        print(f"screenshot of the failure: {path}")


@pytest.fixture
def user(app_server) -> BrowserUser:
    username = f"user_{uuid.uuid4().hex[:10]}"
    app_server.create_user(username)
    return BrowserUser(username)


@pytest.fixture
def logged_in_page(page, user, sim):
    log_in(page, user)
    return page


@pytest.fixture
def phone_page(browser, app_server, user, sim):
    """A page at phone width (PHONE), signed in as `user`, in a browser context of its own."""
    context = browser.new_context(base_url=app_server.url, viewport=PHONE)
    try:
        page = context.new_page()
        log_in(page, user)
        yield page
    finally:
        context.close()
