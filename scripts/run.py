"""`make run`: migrate, start the Llama API simulator when no key is set, then serve with daphne.

Ctrl+C stops every process this script started.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"The Llama API simulator exited (code {process.returncode}).")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    sys.exit(f"The Llama API simulator did not open port {port}.")


def stop(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    # Ctrl+C, and a plain `kill`, stop everything even when started with SIGINT ignored.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    port = int(env.get("PORT", "8000"))
    children: list[subprocess.Popen] = []

    if not env.get("LLAMA_API_KEY"):
        sim_port = int(env.get("SIMULATOR_PORT", "8100"))
        simulator = subprocess.Popen(
            [PYTHON, "manage.py", "llama_simulator", "--port", str(sim_port)], cwd=ROOT, env=env
        )
        children.append(simulator)
        wait_for_port(sim_port, simulator)
        env.update(
            LLAMA_API_KEY="offline-demo",
            LLAMA_API_BASE_URL=f"http://127.0.0.1:{sim_port}/v1",
            LLAMA_API_PROTOCOL="llama",
            LLAMA_OFFLINE_DEMO="1",
        )
        print(f"No LLAMA_API_KEY set: offline demo with the simulator on port {sim_port}.")

    try:
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True)
        print(f"Llama team chat on http://127.0.0.1:{port}/ (Ctrl+C to stop)", flush=True)
        server = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "chatapp.asgi:application",
            ],
            cwd=ROOT,
            env=env,
        )
        children.append(server)
        server.wait()
    except (KeyboardInterrupt, subprocess.CalledProcessError):
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    main()
