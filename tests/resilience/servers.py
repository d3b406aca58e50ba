"""Real processes for the fault tests: daphne servers, a private redis-server, their database.

Everything here waits by polling for a condition (never for a fixed time) and is stopped by
its owner in a `finally`, so a failing test leaves no process behind.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import websockets

from chatapp.llm import KNOWN_MODELS
from tests.chat.conftest import SIM_KEY
from tests.support.polling import wait_for
from tests.support.ports import children_of, free_port, listening_socket, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
READY_SECONDS = 60  # an upper bound for a process to come up, never an expectation
FRAME_SECONDS = 30
# Private redis-servers take the first free port here (this project's port range).
REDIS_PORTS = range(8290, 8300)
REDIS_SERVER = "/usr/bin/redis-server"
ASGI_APPLICATION = "chatapp.asgi:application"
MODEL = KNOWN_MODELS[0]


def manage(env: dict[str, str], *args: str) -> str:
    """Run manage.py with the servers' environment; return its stdout."""
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def new_user_session(env: dict[str, str], username: str) -> str:
    """Create a user in the servers' database and return a session cookie value for them."""
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from django.test import Client\n"
        f"user = get_user_model().objects.create_user({username!r}, password='pw-{username}')\n"
        "client = Client()\n"
        "client.force_login(user)\n"
        "from django.conf import settings\n"
        "print(client.cookies[settings.SESSION_COOKIE_NAME].value)\n"
    )
    return manage(env, "shell", "-v", "0", "-c", code).strip().splitlines()[-1]


# ---- daphne ---------------------------------------------------------------------------------


@dataclass
class Daphne:
    """One daphne process serving the app on a loopback port it was handed (no port race)."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Daphne":
        listener = listening_socket()
        self.port = listener.getsockname()[1]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "chatapp.core.server",
                    "--fd",
                    str(listener.fileno()),
                    ASGI_APPLICATION,
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=[listener.fileno()],
            )
        listener.close()  # daphne holds its own copy
        try:
            wait_for_http(self.url + "/healthz", self.process, self.name, READY_SECONDS)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}:\n{self.log_tail()}") from None
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine or container dies."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=READY_SECONDS)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def get_json(self, path: str, session: str):
        headers = {"Cookie": f"sessionid={session}", "Accept": "application/json"}
        request = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=FRAME_SECONDS) as response:
            return json.loads(response.read())


@dataclass
class Supervised:
    """`manage.py serve`: WEB_CONCURRENCY daphne processes on a socket it is handed."""

    env: dict[str, str]
    log_path: Path
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready: int) -> "Supervised":
        """Start it and wait until `ready` server processes have logged that they listen."""
        listener = listening_socket()
        self.port = listener.getsockname()[1]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [PYTHON, "manage.py", "serve", "--fd", str(listener.fileno())],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=[listener.fileno()],
            )
        listener.close()
        self.wait_listening(ready)
        return self

    def wait_listening(self, count: int) -> None:
        """Until `count` server processes in all have logged that they serve the socket."""
        wait_for(lambda: self.listening() >= count, f"{count} server processes to listen")

    def listening(self) -> int:
        if self.process.poll() is not None:
            raise RuntimeError(f"the supervisor exited:\n{self.log_tail()}")
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text.count("Listening on TCP address")

    def children(self) -> list[int]:
        """The supervisor's running child processes."""
        return children_of(self.process.pid)

    def get_json(self, path: str, session: str):
        headers = {"Cookie": f"sessionid={session}", "Accept": "application/json"}
        request = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=FRAME_SECONDS) as response:
            return json.loads(response.read())

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _tcp_rows() -> list[list[str]]:
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError), open(table) as lines:
            rows += [line.split() for line in list(lines)[1:]]
    return rows


def _port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def serving_pid(pids: list[int], server_port: int, client_port: int) -> int | None:
    """Which of these processes holds the server side of the connection from client_port."""
    inodes = {
        r[9] for r in _tcp_rows() if _port_of(r[1]) == server_port and _port_of(r[2]) == client_port
    }
    for pid in pids:
        if inodes & _socket_inodes(pid):
            return pid
    return None


def server_env(database_url: str, simulator, **overrides: str) -> dict[str, str]:
    """The environment of a production-like server against the simulator."""
    env = {
        **os.environ,
        "DEBUG": "0",
        "DATABASE_URL": database_url,
        "LLAMA_API_KEY": SIM_KEY,
        "LLAMA_API_BASE_URL": simulator.native_url,
        "LLAMA_API_PROTOCOL": "llama",
        "LLAMA_DEFAULT_MODEL": MODEL,
        "LLAMA_OFFLINE_DEMO": "0",
        "STATIC_MANIFEST": "0",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_FORMAT": "text",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    env.update(overrides)
    return env


# ---- redis-server ---------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A redis-server of the test's own, without persistence: a restart forgets everything."""

    log_path: Path
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        if not self.port:
            self.port = free_port(REDIS_PORTS)
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--protected-mode", "yes"]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._answers, f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=READY_SECONDS)

    def restart(self) -> None:
        """Kill it and start a new, empty one on the same port."""
        self.stop()
        self.start()


# ---- a websocket client speaking the chat protocol ------------------------------------------


class ChatClient:
    """A browser's chat socket, without the browser: JSON frames over a real websocket."""

    def __init__(self, server: Daphne, session: str):
        self.server, self.session = server, session
        self.ws = None
        self.received: list[dict] = []

    async def connect(self) -> "ChatClient":
        self.ws = await websockets.connect(
            f"ws://127.0.0.1:{self.server.port}/ws/chat/",
            origin=f"http://127.0.0.1:{self.server.port}",
            additional_headers={"Cookie": f"sessionid={self.session}"},
            max_size=None,
            open_timeout=FRAME_SECONDS,
        )
        return self

    async def send(self, frame: dict | str) -> None:
        # As browsers do: JSON.stringify leaves non-ASCII text unescaped.
        text = frame if isinstance(frame, str) else json.dumps(frame, ensure_ascii=False)
        await self.ws.send(text)

    async def receive(self) -> dict:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), FRAME_SECONDS))
        self.received.append(frame)
        return frame

    async def until(self, predicate: Callable[[dict], bool]) -> list[dict]:
        frames = []
        while True:
            frames.append(await self.receive())
            if predicate(frames[-1]):
                return frames

    async def until_type(self, kind: str, message_id: int | None = None) -> list[dict]:
        return await self.until(
            lambda f: f["type"] == kind and message_id in (None, f.get("message_id"))
        )

    async def send_message(self, content: str, conversation_id: int | None = None) -> dict:
        """chat.send (a new conversation by default); returns the assistant message.created."""
        frame = {"type": "chat.send", "request_id": "r", "conversation_id": conversation_id}
        await self.send({**frame, "content": content})
        frames = await self.until(
            lambda f: (
                f["type"] == "error"
                or (f["type"] == "message.created" and f["message"]["role"] == "assistant")
            )
        )
        assert frames[-1]["type"] == "message.created", frames
        return frames[-1]["message"]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


def text_of(frames: list[dict], message_id: int, after_seq: int = 0) -> str:
    """The text of an answer's deltas, in seq order, checking that none is missing or repeated."""
    deltas = [
        f
        for f in frames
        if f["type"] == "message.delta" and f["message_id"] == message_id and f["seq"] > after_seq
    ]
    seqs = [f["seq"] for f in deltas]
    assert seqs == list(range(after_seq + 1, after_seq + 1 + len(seqs))), seqs
    return "".join(f["text"] for f in deltas)


# ---- a real browser on one of these servers -------------------------------------------------


@dataclass
class PageWatch:
    """Everything a page asked the network for, and the errors it logged."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


def open_chat_page(browser, server: Daphne, session: str, path: str = "/"):
    """A fresh browser context signed in with the session cookie, on a chat page whose socket
    is open; returns (page, watch). The caller closes page.context."""
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(FRAME_SECONDS * 1000)
    cookie = {"name": "sessionid", "value": session, "url": server.url, "httpOnly": True}
    context.add_cookies([cookie])
    watch = PageWatch()
    context.on("request", lambda request: watch.requests.append(request.url))
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and watch.console_errors.append(m.text))
    page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    page.goto(path)
    page.wait_for_selector("html[data-socket=open]", state="attached")
    return page, watch
