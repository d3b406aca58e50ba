"""Loopback ports and the processes that listen on them, for the tests and the benchmarks.

The system picks ports (never fixed numbers), so several suites can run side by side.
"""

import os
import socket
import subprocess
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from .polling import DEFAULT_SECONDS, wait_for


def free_port(ports: Iterable[int] = (0,)) -> int:
    """The first of these loopback ports that nothing listens on; 0 lets the system pick."""
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError(f"no free port in {ports}")


def ports_from_env(name: str) -> Iterable[int]:
    """The range an environment variable names ("8250-8269"), or the system's pick if unset."""
    spec = os.environ.get(name, "")
    if not spec:
        return (0,)
    low, _, high = spec.partition("-")
    return range(int(low), int(high or low) + 1)


def listening_socket() -> socket.socket:
    """A socket already listening on a free loopback port, to hand to a server process as a
    file descriptor (`daphne --fd N`): no other process can take the port meanwhile."""
    return socket.create_server(("127.0.0.1", 0))


def _still_running(process: subprocess.Popen | None, what: str) -> None:
    if process is not None and process.poll() is not None:
        raise RuntimeError(f"{what} exited (code {process.returncode})")


def wait_for_port(
    port: int,
    process: subprocess.Popen | None = None,
    what: str = "the server",
    seconds: float = DEFAULT_SECONDS,
) -> None:
    """Poll until something accepts connections on the port; RuntimeError if process exits."""

    def listening() -> bool:
        _still_running(process, what)
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, f"{what} to listen on port {port}", seconds)


def wait_for_http(
    url: str,
    process: subprocess.Popen | None = None,
    what: str = "the server",
    seconds: float = DEFAULT_SECONDS,
) -> None:
    """Poll until the URL answers 200 (a server's /healthz); RuntimeError if process exits."""

    def answering() -> bool:
        _still_running(process, what)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for(answering, f"{what} to answer {url}", seconds)


def children_of(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is pid, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return sorted(found)
