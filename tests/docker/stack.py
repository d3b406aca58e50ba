"""Docker, Compose, a signed-in visitor and chat sockets, for the tests in this folder."""

import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[2]
APP_IMAGE = os.environ.get("APP_IMAGE", "llama-team-chat:latest")
SIMULATOR_IMAGE = os.environ.get("SIMULATOR_IMAGE", "llama-team-chat-simulator:latest")
STACK_FILES = ["-f", "docker-compose.yml", "-f", "tests/docker/compose.ci.yml"]


def docker(*args: str, timeout: float = 180, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout.strip()


def compose_command() -> list[str]:
    """COMPOSE if set (e.g. "docker-compose"), else Compose v2 where installed, else v1."""
    if os.environ.get("COMPOSE"):
        return os.environ["COMPOSE"].split()
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if v2.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither `docker compose` nor `docker-compose` is installed")


def wait_for(condition: Callable[[], object], timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")


def unused_subnet() -> str:
    """A /24 in 172.31.0.0/16 that no Docker network on this machine uses."""
    ids = docker("network", "ls", "-q").split()
    used = docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids)
    taken = [ipaddress.ip_network(s) for s in used.split() if "." in s]
    for third in range(200, 255):
        subnet = ipaddress.ip_network(f"172.31.{third}.0/24")
        if not any(subnet.overlaps(other) for other in taken):
            return str(subnet)
    raise RuntimeError("no free 172.31.x.0/24 for the stack's network")


class Stack:
    """One compose project: docker-compose.yml with tests/docker/compose.ci.yml on top."""

    def __init__(self, http_port: int):
        self.project = f"ltcci{secrets.token_hex(3)}"
        self.http_port = http_port
        self.subnet = unused_subnet()
        self.env = {
            **os.environ,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "localhost",
            "LLAMA_API_KEY": "sim-key-for-the-stack",
            "LLAMA_API_BASE_URL": "http://simulator:8100/v1",
            "SECURE_SSL_REDIRECT": "0",
            "SECURE_HSTS_SECONDS": "0",
            "HTTP_PORT": str(http_port),
            "COMPOSE_SUBNET": self.subnet,
            "APP_IMAGE": APP_IMAGE,
            "SIMULATOR_IMAGE": SIMULATOR_IMAGE,
        }
        self.base = f"http://localhost:{http_port}"

    def compose(self, *args: str, timeout: float = 300) -> str:
        command = [*compose_command(), "-p", self.project, *STACK_FILES, "--profile", "demo"]
        result = subprocess.run(
            [*command, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} failed:\n{result.stderr[-4000:]}")
        return result.stdout

    def up(self) -> None:
        self.compose("up", "-d", "--no-build", "--scale", "app=2")

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--timeout", "5")

    def containers(self, service: str) -> list[str]:
        return docker(
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ).split()

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": docker("ps", "-aq", "--filter", label).split(),
            "volumes": docker("volume", "ls", "-q", "--filter", label).split(),
            "networks": docker("network", "ls", "-q", "--filter", label).split(),
        }

    def address(self, container: str) -> str:
        return docker(
            "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container
        )

    def logs(self, container: str) -> str:
        result = subprocess.run(
            ["docker", "logs", container], capture_output=True, text=True, check=False
        )
        return result.stdout + result.stderr

    def sockets_opened(self, container: str) -> int:
        """Chat sockets this replica has accepted so far (its access log's open lines)."""
        return self.logs(container).count('"message": "WS /ws/chat/ open"')

    def layer_recoveries(self, container: str) -> int:
        """Times this replica's layer watch has seen Redis forget it (chatapp/chat/layer_watch)."""
        return self.logs(container).count("The channel layer lost its state")

    def replica_metrics(self, address: str, **headers: str) -> httpx.Response:
        """/metrics straight from one replica (this host is on the stack's network)."""
        return httpx.get(f"http://{address}:8000/metrics", headers=headers, timeout=10)

    def gauge(self, address: str, name: str) -> float:
        text = self.replica_metrics(address).text
        return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


class Visitor:
    """A browser's view of the site through nginx: cookies kept by hand, since the session
    cookie is marked Secure and this client speaks plain HTTP to the stack."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if method != "GET" and "csrftoken" in self.cookies:
            headers["X-CSRFToken"] = self.cookies["csrftoken"]
        response = httpx.request(
            method, self.stack.base + path, headers=headers, timeout=30, **kwargs
        )
        for cookie in response.cookies.jar:
            self.cookies[cookie.name] = cookie.value
        return response

    def sign_up(self, username: str, password: str) -> None:
        form = self.request("GET", "/accounts/signup/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        fields = {"username": username, "password1": password, "password2": password}
        done = self.request(
            "POST", "/accounts/signup/", data={**fields, "csrfmiddlewaretoken": token}
        )
        assert done.status_code == 302, done.text[:2000]
        assert "sessionid" in self.cookies

    def socket(self) -> ClientConnection:
        return connect(
            f"ws://localhost:{self.stack.http_port}/ws/chat/",
            origin=self.stack.base,
            additional_headers={"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())},
            open_timeout=30,
            legacy=True,  # opened here, closed by the tests
        )


def send(socket: ClientConnection, frame: dict) -> None:
    socket.send(json.dumps(frame))


def read_until(
    socket: ClientConnection, done: Callable[[dict], bool], timeout: float = 60
) -> list[dict]:
    """Frames up to and including the first for which done(frame) holds."""
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching frame in {timeout:.0f} s; got {frames[-5:]}")
        frame = json.loads(socket.recv(timeout=remaining))
        frames.append(frame)
        if done(frame):
            return frames


def deltas(frames: list[dict], message_id: int) -> list[tuple[int, str]]:
    return [
        (f["seq"], f["text"])
        for f in frames
        if f["type"] == "message.delta" and f["message_id"] == message_id
    ]


def finished(message_id: int) -> Callable[[dict], bool]:
    return lambda f: f["type"] == "message.done" and f["message_id"] == message_id
