"""`make run`: migrate, start the Llama API simulator when no key is set, then serve with daphne
(`manage.py serve`: WEB_CONCURRENCY processes, one unless set).

Ctrl+C (or closing the terminal) stops every process this script started. The children run in
sessions of their own, so the terminal's Ctrl+C reaches this script alone, and each child gets
one SIGTERM from it: they stop cleanly, without a KeyboardInterrupt traceback.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import environ

from chatapp.core.supervisor import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"The Llama API simulator exited (code {process.returncode}).")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    sys.exit(f"The Llama API simulator did not open port {port}.")


def port_setting(env: dict[str, str], name: str, default: str) -> int:
    value = env.get(name, default).strip()
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 65536:
        sys.exit(f"{name} must be a port number from 1 to 65535 (got {value!r}).")
    return int(value)


def in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    # Ctrl+C, a plain `kill` and a closed terminal stop everything (the children, in sessions
    # of their own, would outlive it), even when started with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    children: list[subprocess.Popen] = []
    try:
        serve(children)
    except (KeyboardInterrupt, subprocess.CalledProcessError):
        pass
    finally:
        # The app before the simulator: it saves the answers it streams while that still serves.
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "manage.py", *command],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,  # a SIGKILLed run.py leaves nothing serving
    )


def environment(root: Path = ROOT) -> dict[str, str]:
    """This process's environment with what the project's .env adds, read as the settings
    read it (the environment wins): make run decides on the key the app will see."""
    env = dict(os.environ)

    class Into(environ.Env):
        ENVIRON = env

    if (root / ".env").exists():
        Into.read_env(root / ".env", overwrite=False)
    return env


def serve(children: list[subprocess.Popen]) -> None:
    env = environment()
    env.setdefault("DEBUG", "1")
    port = port_setting(env, "PORT", "8000")
    sim_port = port_setting(env, "SIMULATOR_PORT", "8100")
    if not env.get("LLAMA_API_KEY"):
        base_url = env.get("LLAMA_API_BASE_URL")
        # Else the wait below would find that other server and point the app at it.
        if in_use(sim_port):
            sys.exit(
                f"SIMULATOR_PORT {sim_port} is in use: stop what listens there,"
                " or set SIMULATOR_PORT to a free port."
            )
        simulator = start(["llama_simulator", "--port", str(sim_port)], env)
        children.append(simulator)
        try:
            wait_for_port(sim_port, simulator)
        except SystemExit:
            simulator.kill()  # not left behind on the port
            raise
        env.update(
            LLAMA_API_KEY="offline-demo",
            LLAMA_API_BASE_URL=f"http://127.0.0.1:{sim_port}/v1",
            LLAMA_API_PROTOCOL="llama",
            LLAMA_OFFLINE_DEMO="1",
        )
        print(f"No LLAMA_API_KEY set: offline demo with the simulator on port {sim_port}.")
        if base_url:  # a server of one's own that takes no key
            print(
                "LLAMA_API_BASE_URL is not used without LLAMA_API_KEY: for a server that takes"
                " no key (vLLM, Ollama, llama.cpp), set LLAMA_API_KEY to any word.",
                file=sys.stderr,
            )

    migrate = start(["migrate", "--noinput"], env)
    children.append(migrate)
    if migrate.wait() != 0:
        sys.exit(f"manage.py migrate failed (code {migrate.returncode}).")
    print(f"Llama team chat on http://127.0.0.1:{port}/ (Ctrl+C to stop)", flush=True)
    # WEB_CONCURRENCY server processes on the port (one unless set; more need REDIS_URL).
    server = start(["serve", "--bind", "127.0.0.1", "--port", str(port)], env)
    children.append(server)
    if server.wait() != 0:  # it said why (a busy port, WEB_CONCURRENCY without REDIS_URL...)
        sys.exit(server.returncode)


if __name__ == "__main__":
    main()
