"""`make run` (scripts/run.py) stops on Ctrl+C (or a closed terminal) quietly: every process it
started, no traceback; killed outright, it leaves nothing running either."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.files import ROOT, clean_env
from tests.support.polling import wait_for
from tests.support.ports import free_port, wait_for_http

pytestmark = pytest.mark.slow


def descendants(pid: int) -> list[int]:
    """Every process below pid, children first (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_make_run(env: dict[str, str], stdout, stderr) -> subprocess.Popen:
    """`make run` in its own process group, as a shell starts a foreground job: the terminal
    signals the whole group."""
    return subprocess.Popen(
        [sys.executable, "scripts/run.py"],
        cwd=ROOT,
        env=env,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )


def run_env(tmp_path, port: int, sim_port: int) -> dict[str, str]:
    """`make run`'s environment on these ports, with a database and media of the test's own."""
    return clean_env(
        PORT=str(port),
        SIMULATOR_PORT=str(sim_port),
        DATABASE_URL=f"sqlite:///{tmp_path / 'run.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "media"),
        SECRET_KEY="make-run-test-only",
        PYTHONUNBUFFERED="1",
    )


@pytest.mark.parametrize(
    "signum",
    [
        signal.SIGINT,  # Ctrl+C
        signal.SIGHUP,  # the terminal closed, or the ssh session dropped
        signal.SIGKILL,  # killed outright: its children see it go and stop themselves
    ],
    ids=["ctrl-c", "hangup", "kill"],
)
def test_make_run_stops_everything_it_started_without_a_traceback(tmp_path, signum):
    port, sim_port = free_port(), free_port()
    env = run_env(tmp_path, port, sim_port)
    stderr = tmp_path / "stderr.txt"
    started: list[int] = []
    with stderr.open("w") as errors:
        run = start_make_run(env, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            # A ceiling for a busy machine: migrating a new database comes first.
            wait_for_http(f"http://127.0.0.1:{port}/healthz", run, "make run", seconds=240)
            started = descendants(run.pid)
            os.killpg(run.pid, signum)
            assert run.wait(timeout=60) == (-signum if signum == signal.SIGKILL else 0)
            wait_for(lambda: not any(map(running, started)), "every process it started to end")
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
            for pid in started:  # what it left behind, if it did
                if running(pid):
                    os.kill(pid, signal.SIGKILL)
    output = stderr.read_text()
    assert "Traceback" not in output, output
    assert "KeyboardInterrupt" not in output, output
    for listening in (port, sim_port):  # nothing it started is still serving
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", listening), timeout=1).close()


def run_script(tmp_path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/run.py"],
        cwd=ROOT,
        env=clean_env(
            DATABASE_URL=f"sqlite:///{tmp_path / 'run.sqlite3'}",
            MEDIA_ROOT=str(tmp_path / "media"),
            SECRET_KEY="make-run-test-only",
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.parametrize("name", ["PORT", "SIMULATOR_PORT"])
def test_a_port_that_is_not_a_number_stops_make_run_naming_it(tmp_path, name):
    result = run_script(tmp_path, **{name: "80a"})
    assert result.returncode != 0
    assert f"{name} must be a port number from 1 to 65535 (got '80a')." in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run.sqlite3").exists()  # stopped before anything started


def test_a_server_that_cannot_start_fails_make_run(tmp_path):
    result = run_script(tmp_path, PORT=str(free_port()), LLAMA_API_KEY="k", WEB_CONCURRENCY="2")
    assert "WEB_CONCURRENCY=2 needs REDIS_URL" in result.stderr
    assert result.returncode != 0


def test_a_busy_simulator_port_stops_make_run_instead_of_using_what_listens_there(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        sim_port = taken.getsockname()[1]
        env = run_env(tmp_path, free_port(), sim_port)
        errors = tmp_path / "stderr.txt"
        with errors.open("w") as stderr:
            run = start_make_run(env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            code = run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None  # it went on serving, its app pointed at this socket
        finally:
            started = descendants(run.pid)
            if run.poll() is None:
                run.terminate()
                run.wait(timeout=60)
            for pid in started:
                if running(pid):
                    os.kill(pid, signal.SIGKILL)
    assert code not in (None, 0)
    assert f"SIMULATOR_PORT {sim_port} is in use" in errors.read_text()
    assert not (tmp_path / "run.sqlite3").exists()


def test_the_server_output_never_names_a_credential_in_an_address(tmp_path):
    """The app's access line blanks an invitation's token (tests/core/test_logging.py); the
    server under it writes no access line of its own that would name it whole."""
    port, sim_port = free_port(), free_port()
    env = run_env(tmp_path, port, sim_port)
    token = "invitation-token-that-must-stay-out-of-logs"
    output = tmp_path / "output.txt"
    with output.open("w") as written:
        run = start_make_run(env, stdout=written, stderr=subprocess.STDOUT)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", run, "make run", seconds=240)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                connection.sendall(
                    f"GET /invite/{token}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                assert connection.recv(64).startswith(b"HTTP/1.1 302")  # to the login page
            os.killpg(run.pid, signal.SIGINT)
            run.wait(timeout=60)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    text = output.read_text()
    assert "GET /invite/[redacted]/ 302" in text  # the app's own line
    assert token not in text


def test_a_server_named_without_a_key_is_said_to_be_left_for_the_simulator(tmp_path, sim):
    """Without LLAMA_API_KEY make run is the offline demo; an operator who named a server of
    their own that takes no key (vLLM, Ollama) is told why it is not used, and what to set."""
    port, sim_port = free_port(), free_port()
    env = run_env(tmp_path, port, sim_port)
    env.update(LLAMA_API_PROTOCOL="openai", LLAMA_API_BASE_URL=sim.openai_url)
    output = tmp_path / "output.txt"
    with output.open("w") as written:
        run = start_make_run(env, stdout=written, stderr=subprocess.STDOUT)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", run, "make run", seconds=240)
            os.killpg(run.pid, signal.SIGINT)
            run.wait(timeout=60)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    assert (
        "LLAMA_API_BASE_URL is not used without LLAMA_API_KEY: for a server that takes no key"
        " (vLLM, Ollama, llama.cpp), set LLAMA_API_KEY to any word." in output.read_text()
    )
