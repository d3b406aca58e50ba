"""Several daphne processes on one port: `manage.py serve` (docs/operations.md#scaling).

The supervisor opens the listening socket once and starts `WEB_CONCURRENCY` daphne processes
(on uvloop: `python -m chatapp.core.server --fd N`) that all accept from it: the kernel hands
each new connection to whichever process is free to accept it first. A process that dies is
started again (after a pause that grows while it keeps dying young); SIGTERM or SIGINT stops
them all, each finishing its open requests as daphne does on its own.

Each process started gets a token of its own (`chatapp.core.processes`); once one exits
without a clean stop (a crash, SIGKILL, the out-of-memory killer, the SIGKILL that ends a
stop taking too long, or a stop that could not save its answers in time and says so with its
exit code, `stopping.STOP_UNFINISHED`), the hooks registered there run with its token on a
thread of the supervisor's: the answers it was streaming end as interrupted at once.
"""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import multiprocess

from chatapp.core import processes as server_processes
from chatapp.core import stopping as server_stopping

ASGI_APPLICATION = "chatapp.asgi:application"
POLL_SECONDS = 0.2  # how often the supervisor looks at its processes and signals
STOP_SECONDS = 15.0  # daphne's own close timeout is 10 s; then SIGKILL
YOUNG_SECONDS = 10.0  # a process that dies younger than this is in trouble: restart slower
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
ENDED_SECONDS = 10.0  # at exit, how long the ends of dead processes' work may still take
PR_SET_PDEATHSIG = 1


class ServeError(Exception):
    """A setting or an address the supervisor cannot serve with; the message says what to do."""


def cpu_count() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0))
    try:
        with open("/sys/fs/cgroup/cpu.max") as limit:
            quota, period = limit.read().split()
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def check_processes(processes: int, redis_url: str) -> None:
    """More than one process needs the Redis channel layer to stop, watch and resume answers."""
    if processes > 1 and not redis_url:
        raise ServeError(
            f"WEB_CONCURRENCY={processes} needs REDIS_URL: processes share answers (stop,"
            " subscribe, resume) through the Redis channel layer. Set REDIS_URL=redis://host:6379/0,"
            " or WEB_CONCURRENCY=1."
        )


def database_note(processes: int, vendor: str) -> str | None:
    """What several processes on SQLite cost, said at start: it works (one file, its lock),
    but every write of every process queues on that one lock."""
    if processes > 1 and vendor == "sqlite":
        return (
            f"Note: the {processes} server processes share one SQLite file, and each write waits"
            " for the others' to finish. For more than a trial, use PostgreSQL (DATABASE_URL)."
        )
    return None


def _clear_metrics(folder: str) -> None:
    """An earlier run's values (prometheus_client's `*.db` files) would be summed with this
    run's, its live gauges for processes long gone: the folder starts empty of them."""
    for path in Path(folder).glob("*.db"):
        path.unlink(missing_ok=True)


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The one listening socket every server process accepts from."""
    if not 0 <= port <= 65535:  # getaddrinfo would take 65536 as 0 (any port), 99999 as 34463
        raise ServeError(f"Cannot listen on {host}:{port}: a port is a number from 0 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        raise ServeError(f"Cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.listen(backlog)
    return sock


def _find_prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


# Found in the supervisor: the child between fork and exec only calls it. Looking it up there
# (dlopen) could wait forever on a lock a thread of the supervisor's held at the fork.
_PRCTL = _find_prctl()


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when its parent dies, even by SIGKILL (Linux).

    A parent that died before this, or before the exec (its SIGTERM would reach the
    supervisor's own handler, copied into the child), is caught by the server process itself
    (`chatapp.core.processes.supervisor_gone`)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    token: str = ""  # chatapp.core.processes.token() in the process
    started: float = 0.0
    young_deaths: int = 0  # deaths in a row, each soon after its start
    restart_at: float | None = None


def _restart_delay(worker: Worker) -> float:
    return RESTART_DELAYS[min(worker.young_deaths, len(RESTART_DELAYS) - 1)]


@dataclass
class Supervisor:
    """Starts, restarts and stops the server processes sharing `listener`."""

    listener: socket.socket
    processes: int
    daphne_args: Sequence[str] = ()
    say: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))
    stopping: bool = False
    # Where the processes' Prometheus values meet (prometheus_client's multiprocess mode).
    metrics_dir: str | None = None
    ending: list[threading.Thread] = field(default_factory=list)

    def command(self) -> list[str]:
        fd = str(self.listener.fileno())
        server = "chatapp.core.server"  # daphne on uvloop
        return [sys.executable, "-m", server, "--fd", fd, *self.daphne_args, ASGI_APPLICATION]

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; returns the exit code."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop_requested)
        workers = [Worker(index) for index in range(self.processes)]
        # The operator's folder, or one of our own for several processes: either way a dead
        # process's live gauges are taken out of the sums.
        self.metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        own_metrics_dir = self.processes > 1 and not self.metrics_dir
        if own_metrics_dir:
            self.metrics_dir = tempfile.mkdtemp(prefix="llama-team-chat-metrics-")
        elif self.metrics_dir:
            _clear_metrics(self.metrics_dir)
        try:
            for worker in workers:
                try:
                    self._start(worker)
                except (OSError, subprocess.SubprocessError) as error:
                    self._stop_all(workers)
                    raise ServeError(f"Cannot start a server process: {error}") from None
            while not self.stopping:
                for worker in workers:
                    self._look_after(worker)
                time.sleep(POLL_SECONDS)
            self._stop_all(workers)
        finally:
            self._wait_for_ends()
            if own_metrics_dir and self.metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return 0

    def _stop_requested(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _start(self, worker: Worker) -> None:
        env = dict(os.environ)
        worker.token = env[server_processes.TOKEN_ENV] = server_processes.new_token()
        env[server_processes.SUPERVISOR_ENV] = str(os.getpid())
        if self.metrics_dir:
            env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        worker.process = subprocess.Popen(
            self.command(),
            env=env,
            pass_fds=[self.listener.fileno()],
            stdin=subprocess.DEVNULL,
            # Its own process group: Ctrl+C reaches the supervisor, which stops each once.
            process_group=0,
            preexec_fn=die_with_parent,
        )
        worker.started = time.monotonic()
        worker.restart_at = None

    def _look_after(self, worker: Worker) -> None:
        process = worker.process
        if worker.restart_at is not None:
            if time.monotonic() >= worker.restart_at:
                self._restart(worker)
            return
        if process is None or process.poll() is None:
            return
        self._end_work_of(worker)
        if self.metrics_dir:  # its live gauges leave the sums; its counters stay in them
            multiprocess.mark_process_dead(process.pid, self.metrics_dir)
        lived = time.monotonic() - worker.started
        worker.young_deaths = worker.young_deaths + 1 if lived < YOUNG_SECONDS else 0
        delay = _restart_delay(worker)
        self.say(
            f"Server process {worker.index + 1} (pid {process.pid}) exited with code"
            f" {process.returncode} after {lived:.1f} s: starting it again in {delay:g} s."
        )
        worker.restart_at = time.monotonic() + delay

    def _restart(self, worker: Worker) -> None:
        """Start it again. A start that fails (no memory to fork, the program gone in a deploy)
        is tried again later, as a process dying young is, while the others serve on."""
        try:
            self._start(worker)
        except (OSError, subprocess.SubprocessError) as error:
            worker.young_deaths += 1
            delay = _restart_delay(worker)
            self.say(
                f"Server process {worker.index + 1} could not be started ({error}):"
                f" trying again in {delay:g} s."
            )
            worker.restart_at = time.monotonic() + delay

    def _end_work_of(self, worker: Worker) -> None:
        """What the exited process left running ends now (chatapp.core.processes), on a
        thread: a slow database does not hold up restarts or a stop."""
        thread = threading.Thread(
            target=server_processes.process_ended,
            args=(worker.token,),
            name=f"ended-{worker.index + 1}",
            daemon=True,
        )
        self.ending = [t for t in self.ending if t.is_alive()]
        self.ending.append(thread)
        thread.start()

    def _wait_for_ends(self) -> None:
        deadline = time.monotonic() + ENDED_SECONDS
        for thread in self.ending:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _stop_all(self, workers: list[Worker]) -> None:
        for worker in workers:  # died since they were last looked after
            if worker.process and worker.restart_at is None and worker.process.poll() is not None:
                self._end_work_of(worker)
        running = [(w, w.process) for w in workers if w.process and w.process.poll() is None]
        for _, process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for worker, process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.returncode != 0:  # a clean stop ended its answers itself
                unsaved = process.returncode == server_stopping.STOP_UNFINISHED
                why = " (it did not save its answers within its stop)" if unsaved else ""
                self.say(
                    f"Server process {worker.index + 1} (pid {process.pid}) stopped with code"
                    f" {process.returncode}{why}: ending the answers it left streaming."
                )
                self._end_work_of(worker)
        self.listener.close()
