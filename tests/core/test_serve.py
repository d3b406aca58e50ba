"""`manage.py serve`: the settings it refuses, before any server process starts."""

import os
import signal
import socket
import subprocess
import sys
import threading

import pytest
from django.db import connections

from chatapp.chat.models import Conversation, Message
from chatapp.core.stopping import STOP_UNFINISHED
from chatapp.core.supervisor import (
    ASGI_APPLICATION,
    ServeError,
    Supervisor,
    Worker,
    check_processes,
    cpu_count,
    database_note,
    listen,
)
from tests.deploy.files import ROOT, clean_env
from tests.resilience.servers import READY_SECONDS, Supervised
from tests.support.polling import wait_for
from tests.support.ports import wait_for_http


def serve(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "serve", "--port", "0"],
        cwd=ROOT,
        env=clean_env(SECRET_KEY="serve-test-only", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_several_processes_without_redis_are_refused_with_what_to_set():
    result = serve(WEB_CONCURRENCY="3")
    assert result.returncode != 0
    assert "WEB_CONCURRENCY=3 needs REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Serving on" not in result.stderr


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("0", "WEB_CONCURRENCY must be between 1 and 256 (got 0)"),
        ("-1", "WEB_CONCURRENCY must be between 1 and 256 (got -1)"),
        ("abc", "WEB_CONCURRENCY must be a whole number (got 'abc')"),
    ],
)
def test_a_web_concurrency_that_is_not_a_positive_number_stops_start_up_in_one_line(value, said):
    result = serve(WEB_CONCURRENCY=value)
    assert result.returncode != 0
    assert result.stderr.splitlines() == [f"Configuration error: {said}"]


@pytest.mark.parametrize("port", [-1, 65536, 65536 + 8000, 99999])
def test_a_port_out_of_range_is_refused_not_wrapped_around(port):
    with pytest.raises(ServeError, match="a port is a number from 0 to 65535"):
        listen("127.0.0.1", port).close()


def test_serve_says_which_port_it_cannot_use():
    result = subprocess.run(
        [sys.executable, "manage.py", "serve", "--port", "-1"],
        cwd=ROOT,
        env=clean_env(SECRET_KEY="serve-test-only"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Cannot listen on 127.0.0.1:-1: a port is a number from 0 to 65535" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("processes", ["0", "257", "²", "two"])
def test_a_processes_option_out_of_range_is_refused_as_web_concurrency_is(processes):
    result = subprocess.run(
        [sys.executable, "manage.py", "serve", "--port", "0", "--processes", processes],
        cwd=ROOT,
        env=clean_env(SECRET_KEY="serve-test-only", REDIS_URL="redis://127.0.0.1:1/0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "--processes must be a number from 1 to 256, or 'auto'" in result.stderr
    assert "Traceback" not in result.stderr and "Serving on" not in result.stderr


def test_one_process_needs_no_redis_and_several_need_it():
    check_processes(1, "")
    check_processes(4, "redis://127.0.0.1:6379/0")
    with pytest.raises(ServeError, match="REDIS_URL"):
        check_processes(2, "")


def test_one_per_core_counts_at_least_one_and_no_more_than_the_affinity():
    import os

    assert 1 <= cpu_count() <= len(os.sched_getaffinity(0))


def test_the_server_processes_run_daphne_on_uvloop_with_writes_and_text_frames_of_their_own():
    """The policy is set before daphne.server makes its Twisted reactor's loop."""
    check = (
        "from chatapp.core import server; assert server.use_uvloop(); server.use_eager_writes();"
        "server.send_text_at_once();"
        "import daphne.server; from twisted.internet import reactor, tcp, unix;"
        "print(type(reactor._asyncioEventloop).__module__);"
        "print(tcp.Port.transport.__name__, unix.Port.transport.__name__);"
        "print(daphne.server.Server.handle_reply.__module__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    expected = ["uvloop", "EagerTCPServer", "EagerUNIXServer", "chatapp.core.server"]
    assert result.stdout.split() == expected, result.stderr


def test_the_supervisor_starts_the_uvloop_server_on_the_shared_socket():
    with socket.socket() as listener:
        command = Supervisor(listener, processes=1).command()
        assert command[1:5] == ["-m", "chatapp.core.server", "--fd", str(listener.fileno())]


@pytest.mark.slow
def test_a_dead_process_leaves_the_metrics_sums_in_a_folder_the_operator_chose(tmp_path):
    """Its live gauges (open sockets, streams) leave the sums, as with the supervisor's own
    folder: otherwise /metrics counts a dead process's sockets for as long as it runs. An
    earlier run's values go at start; the operator's other files stay."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    # An earlier run's files: its gauges would count sockets of processes long gone.
    stale = [metrics / "gauge_livesum_999999.db", metrics / "counter_999999.db"]
    for path in stale:
        path.write_bytes(b"\0" * 8)
    (metrics / "README").write_text("the operator's own file")
    env = clean_env(
        SECRET_KEY="serve-test-only",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
    )
    served = Supervised(env, tmp_path / "serve.log")
    try:
        served.start(ready=1)
        (first,) = served.children()
        assert not any(path.exists() for path in stale)
        gauges = metrics / f"gauge_livesum_{first}.db"
        wait_for(gauges.exists, "the server process's gauges")
        os.kill(first, signal.SIGKILL)
        served.wait_listening(2)  # started again
        assert not gauges.exists()
    finally:
        assert served.stop() == 0
    assert list(metrics.iterdir())  # the operator's folder itself stays, with the counters
    assert (metrics / "README").read_text() == "the operator's own file"


def test_several_processes_on_sqlite_are_told_what_it_costs():
    assert "use PostgreSQL (DATABASE_URL)" in database_note(2, "sqlite")
    assert database_note(1, "sqlite") is None
    assert database_note(2, "postgresql") is None


@pytest.mark.slow
def test_serve_says_so_when_several_processes_share_an_sqlite_file(tmp_path):
    env = clean_env(
        SECRET_KEY="serve-test-only",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        WEB_CONCURRENCY="2",
        REDIS_URL="redis://127.0.0.1:1/0",  # never reached: no socket connects
    )
    served = Supervised(env, tmp_path / "serve.log")
    try:
        served.start(ready=2)
        log = served.log_path.read_text()
        assert "the 2 server processes share one SQLite file" in log
    finally:
        served.stop()


@pytest.mark.slow
def test_a_server_process_whose_supervisor_died_before_it_ran_does_not_serve(tmp_path):
    """The supervisor was killed between starting the process and the process arming its
    death signal (or before it could take that signal as daphne's stop): the process was
    handed to another parent. It finds its parent is not the supervisor that started it
    (CHAT_SUPERVISOR_PID) and exits instead of serving on, orphaned."""
    env = clean_env(
        SECRET_KEY="serve-test-only",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CHAT_SUPERVISOR_PID=str(os.getppid()),  # a pid that is not the process's parent
    )
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        fd = str(listener.fileno())
        command = [sys.executable, "-m", "chatapp.core.server", "--fd", fd, ASGI_APPLICATION]
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            pass_fds=[listener.fileno()],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            output, _ = process.communicate(timeout=READY_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 1
    assert "The supervisor that started this server process has exited" in output
    assert "Listening" not in output


class Programs(Supervisor):
    """A supervisor whose server processes are the given commands, one for each start in
    turn (the last for every start after), instead of daphne."""

    def __init__(self, listener: socket.socket, processes: int, commands: list[list[str]]):
        self.said: list[str] = []
        super().__init__(listener, processes, say=self.said.append)
        self.commands = commands
        self.starts = 0
        self.started: list[subprocess.Popen] = []
        self.tokens: list[str] = []

    def _start(self, worker: Worker) -> None:
        super()._start(worker)
        assert worker.process is not None
        self.started.append(worker.process)
        self.tokens.append(worker.token)

    def command(self) -> list[str]:
        self.starts += 1
        return self.commands[min(self.starts, len(self.commands)) - 1]


def run_restoring_signals(supervisor: Supervisor) -> int:
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return supervisor.run()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


MISSING_PROGRAM = ["/nonexistent/python", "-m", "chatapp.core.server"]
SERVING = [sys.executable, "-c", "import time; time.sleep(600)"]


@pytest.mark.slow
def test_a_process_that_cannot_be_started_again_is_tried_again_while_the_others_serve(
    transactional_db,
):
    """A dead process whose new start fails (no memory to fork, the program replaced by a
    deploy) is tried again later: the supervisor does not stop, and with it every process."""
    exits_at_once = [sys.executable, "-c", "pass"]
    with socket.socket() as listener:
        supervisor = Programs(listener, 1, [exits_at_once, MISSING_PROGRAM, SERVING])

        ended = threading.Event()

        def stop_once_started_again() -> None:
            wait_for(lambda: supervisor.starts >= 3 or ended.is_set(), "the third start")
            if not ended.is_set():
                os.kill(os.getpid(), signal.SIGTERM)

        stopper = threading.Thread(target=stop_once_started_again)
        stopper.start()
        try:
            assert run_restoring_signals(supervisor) == 0
        finally:
            ended.set()
            stopper.join()
    failed = [line for line in supervisor.said if "could not be started" in line]
    assert len(failed) == 1, supervisor.said
    assert "No such file or directory" in failed[0]
    assert "trying again in" in failed[0]


def test_a_process_that_cannot_be_started_at_start_up_stops_serve_and_the_others(
    transactional_db,
):
    """The process already started is stopped; as it did not stop cleanly (it has no
    handler), its answers are ended on a thread that reads the database."""
    with socket.socket() as listener:
        supervisor = Programs(listener, 2, [SERVING, MISSING_PROGRAM])
        try:
            with pytest.raises(ServeError, match="Cannot start a server process: .*No such file"):
                run_restoring_signals(supervisor)
            left = [process.pid for process in supervisor.started if process.poll() is None]
        finally:
            for process in supervisor.started:  # a failing run leaves no process behind
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert len(supervisor.started) == 1
    assert left == []  # the first one was stopped, not left serving alone


# The server process with a stopping hook that never finishes: its answers' final save cannot
# end within the stop's time (a database that does not answer, a save queued behind others).
UNFINISHED_STOP = """
import asyncio
from chatapp.core import server, stopping

async def never_ends():
    await asyncio.Event().wait()

stopping.STOP_SECONDS = 0.5
stopping.when_stopping(never_ends)
server.main()
"""


@pytest.mark.slow
def test_a_process_whose_stop_ran_out_of_time_has_its_answers_ended_by_the_supervisor(
    transactional_db, team, member, tmp_path, monkeypatch
):
    """Its stop did not save its answers, so it exits with a code of its own instead of a clean
    stop's 0: the supervisor ends its streaming answers at once, their text kept, rather than
    leaving them streaming until a reaper finds their heartbeat stale."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    monkeypatch.setenv("CHAT_REAPER_INTERVAL_SECONDS", "0")
    conversation = Conversation.objects.create(team=team, owner=member, model="m")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        fd = str(listener.fileno())
        command = [sys.executable, "-c", UNFINISHED_STOP, "--fd", fd, ASGI_APPLICATION]
        supervisor = Programs(listener, 1, [command])
        answers: list[Message] = []
        ended = threading.Event()

        def stop_once_serving() -> None:
            try:
                wait_for(lambda: supervisor.started or ended.is_set(), "the start")
                if ended.is_set():
                    return
                wait_for_http(f"http://127.0.0.1:{port}/healthz", supervisor.started[0])
                answer = Message.objects.create(
                    conversation=conversation,
                    role="assistant",
                    content="every token shown",
                    status="streaming",
                    server_process=supervisor.tokens[0],
                )
                answers.append(answer)
                os.kill(os.getpid(), signal.SIGTERM)
            finally:
                connections.close_all()

        stopper = threading.Thread(target=stop_once_serving)
        stopper.start()
        try:
            assert run_restoring_signals(supervisor) == 0
        finally:
            ended.set()
            stopper.join()
            for process in supervisor.started:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    (process,) = supervisor.started
    assert process.returncode == STOP_UNFINISHED
    (answer,) = answers
    answer.refresh_from_db()
    assert (answer.status, answer.content) == ("interrupted", "every token shown")
    said = "\n".join(supervisor.said)
    assert "(it did not save its answers within its stop)" in said, said
