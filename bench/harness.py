"""Shared benchmark plumbing: the simulator and daphne as real processes, a logged-in user,
and the two clients that are compared (straight from the simulator, and through the app).

Ports: the OS picks free ones unless BENCH_APP_PORTS / BENCH_SIM_PORTS name a range
("8250-8269"). Database: a fresh SQLite file in a temporary directory, or the PostgreSQL
database named by a postgres:// URL, which is dropped and created anew for the run.
"""

import asyncio
import ctypes
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect

from llama_simulator.answers import tokenize
from llama_simulator.plan import STAMP_CLOSE, STAMP_OPEN
from tests.support.ports import children_of, free_port, ports_from_env, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
PYTHON = sys.executable
USERNAME = "bench"
PASSWORD = "bench-password-for-local-runs"
API_KEY = "bench-key"
MODEL = "Llama-4-Maverick-17B-128E-Instruct-FP8"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/ltc_bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PR_SET_PDEATHSIG = 1
SERVER_CPUS, CLIENT_CPUS = {0}, {1}  # --pin
STAMP = re.compile(f"{STAMP_OPEN}([0-9.]+){STAMP_CLOSE}")
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


# --- processes -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat (utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE


def run_queue_seconds(pid: int) -> float:
    """Time the process's threads waited for a free core (/proc/<pid>/task/*/schedstat)."""
    waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            waited += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return waited / 1e9


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _end_with_parent() -> None:
    """In the child: get SIGTERM when the benchmark dies, so no server outlives it."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Service:
    """A child process with its output in a log file, and its CPU and memory readings.

    cpus pins it (and what it starts) to those cores; the readings add up its child processes
    (the server processes `manage.py serve` starts).
    """

    def __init__(
        self, name: str, args: list[str], env: dict, log_dir: Path, cpus: set[int] | None = None
    ):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")

        def prepare() -> None:
            _end_with_parent()
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=prepare,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> list[int]:
        return [self.pid, *children_of(self.pid)]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def rss_bytes(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids())

    def run_queue_seconds(self) -> float:
        return sum(run_queue_seconds(pid) for pid in self.pids())

    def wait_for_port(self, port: int, seconds: float = 30) -> None:
        try:
            wait_for_port(port, self.process, self.name, seconds)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}: see {self.log_path}\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def reset_postgres(url: str) -> None:
    """Drop and create the benchmark's own database, so each run starts empty."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        database = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(database))


def postgres_available(url: str) -> bool:
    import psycopg

    admin_url = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    try:
        psycopg.connect(admin_url, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


# --- the stack: simulator + daphne + a logged-in user -----------------------------------------


@dataclass
class StackOptions:
    tokens_per_second: float = 30.0
    first_token_delay: float = 0.05
    database_url: str | None = None  # None: a fresh SQLite file
    redis_url: str | None = None  # None: the in-memory channel layer
    asgi: str = "chatapp.asgi:application"
    extra_env: dict = field(default_factory=dict)
    # Pinned as the peer comparison was: the server on core 0, simulator and client on core 1.
    pin: bool = False
    processes: int = 1  # more: `manage.py serve` with WEB_CONCURRENCY (needs redis_url)
    profile: str | None = None  # a path: one server process runs under cProfile, written there
    # "uvloop": the server as `make run` and the image start it (chatapp.core.server);
    # "asyncio": plain `daphne` on asyncio's own loop, for before-and-after figures.
    loop: str = "uvloop"
    # More than 1: that many people of one team, each signed in; sockets take turns among them.
    users: int = 1


class Stack:
    """The simulator and one daphne process, migrated, with a user logged in."""

    def __init__(self, options: StackOptions | None = None):
        self.options = options or StackOptions()
        self.services: list[Service] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="ltc-bench-")
        self.dir = Path(self._tmp.name)

    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.sim_port = free_port(ports_from_env("BENCH_SIM_PORTS"))
        self.app_port = free_port(ports_from_env("BENCH_APP_PORTS"))
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.app_url = f"http://127.0.0.1:{self.app_port}"
        self.ws_url = f"ws://127.0.0.1:{self.app_port}/ws/chat/"
        self.env = self._env()
        if self.database_url.startswith("postgres"):
            reset_postgres(self.database_url)
        manage(self.env, "migrate", "--noinput", "-v", "0")
        manage(self.env, "shell", "-v", "0", "-c", CREATE_USER)
        o = self.options
        self.simulator = self._service(
            "simulator",
            ["manage.py", "llama_simulator", "--port", str(self.sim_port)]
            + ["--tokens-per-second", str(o.tokens_per_second)]
            + ["--first-token-delay", str(o.first_token_delay), "--api-key", API_KEY],
            CLIENT_CPUS if o.pin else None,
        )
        if o.pin:
            os.sched_setaffinity(0, CLIENT_CPUS)
        if o.processes > 1:
            args = ["manage.py", "serve", "--port", str(self.app_port)]
            args += ["--processes", str(o.processes), "--verbosity-daphne", "0"]
        else:
            module = "chatapp.core.server" if o.loop == "uvloop" else "daphne"
            args = ["-m", module, "-b", "127.0.0.1", "-p", str(self.app_port), o.asgi]
            if o.profile:
                args = ["-m", "cProfile", "-o", o.profile, *args]
        self.app = self._service("daphne", args, SERVER_CPUS if o.pin else None)
        self.simulator.wait_for_port(self.sim_port)
        self.app.wait_for_port(self.app_port)
        self.session_id = login(self.app_url)
        self.session_ids = [self.session_id]
        if o.users > 1:
            self.session_ids += json.loads(manage(self.env, "shell", "-v", "0", "-c", TEAMMATES))

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()
        self._tmp.cleanup()

    @property
    def database_url(self) -> str:
        return self.options.database_url or f"sqlite:///{self.dir / 'bench.sqlite3'}"

    def _env(self) -> dict:
        env = service_env(self.database_url)
        env.update(
            LLAMA_API_KEY=API_KEY,
            LLAMA_API_BASE_URL=f"{self.sim_url}/v1",
            LLAMA_API_PROTOCOL="llama",
            # One user drives every stream here; the per-user limits would refuse the load.
            CHAT_MAX_CONCURRENT_GENERATIONS="100000",
            CHAT_WS_MESSAGES_PER_MINUTE="1000000",
            BENCH_USERNAME=USERNAME,
            BENCH_PASSWORD=PASSWORD,
            BENCH_USERS=str(self.options.users),
        )
        if self.options.redis_url:
            env["REDIS_URL"] = self.options.redis_url
        env.update(self.options.extra_env)
        return env

    def _service(self, name: str, args: list[str], cpus: set[int] | None = None) -> Service:
        service = Service(name, [PYTHON, *args], self.env, self.dir, cpus)
        self.services.append(service)
        return service

    # The websocket as a browser opens it: session cookie, and an Origin the app allows.
    def ws_headers(self, user: int = 0) -> dict:
        session_id = self.session_ids[user % len(self.session_ids)]
        return {"Cookie": f"sessionid={session_id}", "Origin": self.app_url}

    async def open_socket(self, user: int = 0) -> ClientConnection:
        """A socket of the first user, or of the user'th of StackOptions.users (modulo)."""
        return await connect(
            self.ws_url,
            additional_headers=self.ws_headers(user),
            compression=None,
            max_size=None,
            ping_interval=None,  # a late pong under load must not close the socket
            open_timeout=120,
            close_timeout=5,
        )

    async def upstream_requests(self, http: httpx.AsyncClient) -> list[dict]:
        """The chat request bodies the simulator received, oldest first (its last 5,000)."""
        response = await twice(http.get, f"{self.sim_url}/_sim/requests")
        response.raise_for_status()
        return response.json()

    async def forget_upstream_requests(self, http: httpx.AsyncClient) -> None:
        (await twice(http.delete, f"{self.sim_url}/_sim/requests")).raise_for_status()


async def twice(send: Callable[..., Awaitable[httpx.Response]], *args, **kwargs) -> httpx.Response:
    """A request to the simulator that may go out twice (it changes nothing, or nothing more the
    second time): asked again once if the connection fails under it, such as one the simulator
    closed as the request set out ("Server disconnected without sending a response": see
    KEEP_IDLE_SECONDS)."""
    try:
        return await send(*args, **kwargs)
    except httpx.TransportError:
        return await send(*args, **kwargs)


CREATE_USER = """
import os
from django.contrib.auth import get_user_model
get_user_model().objects.create_user(
    os.environ["BENCH_USERNAME"], password=os.environ["BENCH_PASSWORD"]
)
"""


# The other users of StackOptions.users: one team with the first, each with a session made
# here (a login through the form each would cost the server a password hash apiece).
TEAMMATES = """
import json, os
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth import get_user_model
from chatapp.teams.models import Membership, Role, Team
User = get_user_model()
first = User.objects.get(username=os.environ["BENCH_USERNAME"])
count = int(os.environ["BENCH_USERS"])
others = User.objects.bulk_create(
    [User(username=f"{first.username}-{i}", password=first.password) for i in range(1, count)]
)
team = Team.objects.create(name="Bench")
Membership.objects.bulk_create(
    [Membership(team=team, user=user, role=Role.MEMBER) for user in [first, *others]]
)
store = import_module(settings.SESSION_ENGINE).SessionStore
keys = []
for user in others:
    session = store()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    keys.append(session.session_key)
print(json.dumps(keys))
"""


def service_env(database_url: str) -> dict:
    """What a process of this project (`manage.py`, the server) needs to start here."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        SECRET_KEY="bench-" + uuid.uuid4().hex,
        DEBUG="0",
        STATIC_MANIFEST="0",
        DATABASE_URL=database_url,
        ALLOWED_HOSTS="127.0.0.1",
        LOG_LEVEL="WARNING",
        SECURE_SSL_REDIRECT="0",  # plain HTTP on loopback, no TLS proxy in front
        PYTHONUNBUFFERED="1",
    )
    return env


def chat_pace_prompts(streams: int, tokens: int, tps: float, ttft: float) -> list[str]:
    """One question a stream: a long answer at the simulator's chat pace, each chunk stamped."""
    return [
        f"Chat-pace stream {i} of {streams}. [sim:long tokens={tokens}]"
        f" [sim:pace tps={tps:g} ttft={ttft:g}] [sim:stamp]"
        for i in range(streams)
    ]


def arrival_delays(count: int, arrivals: float) -> list[float]:
    """When each of `count` answers starts, `arrivals` a second on average, in order. One
    generator draws them all: a generator seeded anew for each would give one time to all."""
    draws = random.Random(7)
    return sorted(draws.uniform(0, count / arrivals) for _ in range(count))


def manage(env: dict, *args: str) -> str:
    """Run a management command; returns what it printed."""
    done = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def login(app_url: str, username: str = USERNAME, password: str = PASSWORD) -> str:
    """Log in through the real login form and return the session id."""
    page = httpx.get(f"{app_url}/accounts/login/", timeout=30)
    page.raise_for_status()
    token = CSRF_FIELD.search(page.text)
    csrf_cookie = page.cookies.get("csrftoken")
    if not token or not csrf_cookie:
        raise RuntimeError("the login page has no CSRF token")
    response = httpx.post(
        f"{app_url}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token[1]},
        headers={"Cookie": f"csrftoken={csrf_cookie}", "Referer": f"{app_url}/accounts/login/"},
        timeout=30,
    )
    session_id = response.cookies.get("sessionid")
    if response.status_code != 302 or not session_id:
        raise RuntimeError(f"login failed: HTTP {response.status_code}")
    return session_id


# --- one streamed answer, as the client saw it ------------------------------------------------


@dataclass
class Stream:
    """Arrival times (time.perf_counter) of one answer's pieces, seen by the client."""

    started: float
    frames: list[tuple[float, str]] = field(default_factory=list)
    finished: float | None = None
    status: str | None = None
    usage: dict | None = None
    error: str | None = None
    conversation_id: int | None = None
    seq_gaps: int = 0  # delta frames whose seq did not follow the previous one
    milestones: dict[str, float] = field(default_factory=dict)
    # [sim:stamp] answers: arrival minus the simulator's send time, per chunk it sent (s).
    lags: list[float] = field(default_factory=list)

    def add(self, arrival: float, text: str) -> None:
        """A piece of text arrived at perf_counter() `arrival`: keep it, less its stamps."""
        if STAMP_OPEN in text:
            now = time.time() - (time.perf_counter() - arrival)
            self.lags += [now - float(sent) for sent in STAMP.findall(text)]
            text = STAMP.sub("", text)
        self.frames.append((arrival, text))

    @property
    def text(self) -> str:
        return "".join(text for _, text in self.frames)

    @property
    def ok(self) -> bool:
        return self.error is None and self.finished is not None and self.seq_gaps == 0

    @property
    def ttft(self) -> float:
        return self.frames[0][0] - self.started

    @property
    def total(self) -> float:
        return self.finished - self.started

    def token_times(self) -> list[float]:
        """When each simulator token (a word with its leading space) reached the client."""
        times: list[float] = []
        frames = iter(self.frames)
        received, arrival = 0, 0.0
        position = 0
        for token in tokenize(self.text):
            position += len(token)
            while received < position:
                arrival, text = next(frames)
                received += len(text)
            times.append(arrival)
        return times

    def token_gaps(self) -> list[float]:
        times = self.token_times()
        return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


async def app_stream(
    ws: ClientConnection,
    content: str,
    conversation_id: int | None = None,
    settings: dict | None = None,
    timeout: float = 300,
) -> Stream:
    """Send one chat.send on an open socket and follow the answer to message.done."""
    request_id = uuid.uuid4().hex
    frame: dict = {"type": "chat.send", "request_id": request_id, "content": content}
    frame["conversation_id"] = conversation_id
    if settings:
        frame["settings"] = settings
    payload = json.dumps(frame)
    stream = Stream(started=time.perf_counter(), conversation_id=conversation_id)
    await ws.send(payload)
    async with asyncio.timeout(timeout):
        await _follow(ws, stream, request_id)
    return stream


async def _follow(ws: ClientConnection, stream: Stream, request_id: str) -> None:
    answer_id, next_seq = None, 1
    async for raw in ws:
        now = time.perf_counter()
        event = json.loads(raw)
        kind = event["type"]
        if kind == "message.delta" and event["message_id"] == answer_id:
            stream.seq_gaps += event["seq"] != next_seq
            next_seq = event["seq"] + 1
            stream.add(now, event["text"])
        elif kind == "message.done" and event["message_id"] == answer_id:
            stream.finished, stream.status = now, event["status"]
            stream.usage = event.get("usage")
            if stream.status != "complete":
                stream.error = f"answer ended {stream.status}"
            return
        elif kind in ("conversation.created", "message.created"):
            role = event.get("message", {}).get("role", "conversation")
            stream.milestones.setdefault(f"{kind}:{role}", now - stream.started)
            if role == "assistant" and event.get("request_id") == request_id:
                answer_id = event["message"]["id"]
                stream.conversation_id = event["message"]["conversation_id"]
        elif kind in ("message.error", "error"):
            stream.error = json.dumps(event["error"])
            if kind == "error" or event.get("message_id") in (None, answer_id):
                return
    stream.error = stream.error or "the socket closed before message.done"


async def direct_stream(http: httpx.AsyncClient, sim_url: str, body: dict) -> Stream:
    """The same request straight to the simulator: the baseline the app is compared with."""
    payload = json.dumps({**body, "stream": True}).encode()
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "Accept": "text/event-stream",
        "Content-Type": "application/json",
    }
    stream = Stream(started=time.perf_counter())
    url = f"{sim_url}/v1/chat/completions"
    async with http.stream("POST", url, content=payload, headers=headers) as response:
        if response.status_code != 200:
            stream.error = f"HTTP {response.status_code}"
            return stream
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                _read_chunk(stream, json.loads(line[5:]))
    stream.finished = time.perf_counter()
    return stream


def _read_chunk(stream: Stream, chunk: dict) -> None:
    event = chunk.get("event") or {}
    text = (event.get("delta") or {}).get("text")
    if text:
        stream.add(time.perf_counter(), text)
    if event.get("event_type") == "complete":
        stream.status = event.get("stop_reason")
    for metric in event.get("metrics") or []:
        if metric.get("metric") == "num_completion_tokens":
            stream.usage = {"completion_tokens": metric.get("value")}


# uvicorn, serving the simulator, closes a connection after 5 s idle, which is also how long
# httpx keeps one by default: a request could set out on a connection as the simulator closed
# it. The benchmark's clients let theirs go a second sooner.
KEEP_IDLE_SECONDS = 4.0


def direct_client() -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=None, max_keepalive_connections=1000, keepalive_expiry=KEEP_IDLE_SECONDS
    )
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(300, connect=30))


# --- figures --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return percentile(values, 50)


def machine() -> dict:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),  # other work on the machine skews the figures
    }


def write_result(name: str, result: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    return path


def run(coroutine) -> object:
    """Run the client on uvloop: the load generator should cost as little CPU as it can."""
    import uvloop

    return uvloop.run(coroutine)
