"""The app image as built: who it runs as, what it leaves out, what it serves, its health."""

import json
import re
import secrets
import subprocess

import httpx
import pytest

from tests.docker.stack import APP_IMAGE, ROOT, SIMULATOR_IMAGE, docker, wait_for

pytestmark = pytest.mark.docker


def run(image: str, *command: str) -> str:
    return docker("run", "--rm", image, *command)


def test_it_runs_as_an_unprivileged_user():
    assert docker("image", "inspect", "-f", "{{.Config.User}}", APP_IMAGE) == "10001"
    assert run(APP_IMAGE, "id", "-u") == "10001"
    assert run(SIMULATOR_IMAGE.split()[0], "--help").startswith("usage")


def test_it_carries_no_development_tools_and_no_simulator():
    # uvicorn is in the image as the MCP SDK's requirement (tool servers), so not listed here.
    probe = (
        "import importlib.util, json; print(json.dumps([m for m in "
        "('pytest', 'ruff', 'playwright', 'llama_simulator', 'pip_tools', 'uv') "
        "if importlib.util.find_spec(m)]))"
    )
    assert json.loads(run(APP_IMAGE, "python", "-c", probe)) == []
    found = run(APP_IMAGE, "sh", "-c", "command -v gcc cc make git curl || true")
    assert found == ""
    assert run(APP_IMAGE, "ls", "/app").split() == [
        "chatapp",
        "deploy",
        "manage.py",
        "static",
        "staticfiles",
        "templates",
    ]


@pytest.fixture(scope="module")
def container():
    name = f"ltc-image-{secrets.token_hex(3)}"
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--health-interval=2s",
        "-p",
        "127.0.0.1::8000",
        "-e",
        f"SECRET_KEY={secrets.token_urlsafe(50)}",
        "-e",
        "ALLOWED_HOSTS=localhost",
        "-e",
        "MIGRATE_ON_START=1",
        "-e",
        "SECURE_SSL_REDIRECT=0",
        APP_IMAGE,
    )
    try:
        yield name
    finally:
        docker("rm", "-f", "-v", name, check=False)


def health(name: str) -> str:
    return docker("inspect", "-f", "{{.State.Health.Status}}", name)


def test_it_passes_its_healthcheck_and_serves_hashed_static_files(container):
    wait_for(lambda: health(container) == "healthy", 180, "the HEALTHCHECK to pass")
    state = json.loads(docker("inspect", "-f", "{{json .State.Health}}", container))
    assert state["Log"][-1]["ExitCode"] == 0
    port = docker("port", container, "8000").splitlines()[0].rsplit(":", 1)[1]
    base = f"http://localhost:{port}"
    page = httpx.get(f"{base}/accounts/login/", timeout=10)
    assert page.status_code == 200
    hashed = re.findall(r"/static/[\w/.-]+\.[0-9a-f]{12}\.(?:css|js)", page.text)
    assert hashed, "pages link static files by hashed names"
    asset = httpx.get(base + hashed[0], timeout=10)
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]
    unhashed = re.sub(r"\.[0-9a-f]{12}\.", ".", hashed[0])
    assert "immutable" not in httpx.get(base + unhashed, timeout=10).headers.get(
        "cache-control", ""
    )


def documented_single_container_commands() -> tuple[list[str], list[str]]:
    """The shell lines docs/operations.md gives for a single container's backup and restore."""
    text = (ROOT / "docs/operations.md").read_text()
    section = text.split("### Backing up and restoring", 1)[1].split("\n### ", 1)[0]
    blocks = [
        re.sub(r"\\\n\s*", "", block) for block in re.findall(r"```sh\n(.*?)```", section, re.S)
    ]
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    backup = [line for line in lines if line.startswith("docker exec CONTAINER python")]
    backup += [line for line in lines if line.startswith("docker cp CONTAINER:")]
    backup += re.findall(r"^# \(single container: (docker exec .*)\)$", "\n".join(lines), re.M)
    start = lines.index("docker stop CONTAINER") if "docker stop CONTAINER" in lines else 0
    end = lines.index("docker start CONTAINER") + 1 if "docker start CONTAINER" in lines else 0
    return backup, lines[start:end]


def test_a_single_container_restored_as_documented_takes_writes_again(tmp_path):
    backup, restore = documented_single_container_commands()
    assert len(backup) == 3 and restore, "docs/operations.md gives every command"
    name, volume = f"ltc-restore-{secrets.token_hex(3)}", f"ltc-restore-{secrets.token_hex(3)}"

    def shell(line: str) -> None:
        line = line.replace("CONTAINER", name).replace("chat-data", volume)
        line = line.replace(" llama-team-chat ", f" {APP_IMAGE} ")
        subprocess.run(["bash", "-c", line], cwd=tmp_path, check=True, timeout=120)

    def create_user(username: str) -> subprocess.CompletedProcess:
        command = ["python", "manage.py", "createsuperuser", "--noinput", "--username", username]
        return subprocess.run(
            ["docker", "exec", name, *command, "--email", f"{username}@example.com"],
            capture_output=True,
            text=True,
            check=False,
        )

    def usernames() -> list[str]:
        probe = (
            "from django.contrib.auth import get_user_model; "
            "print(*get_user_model().objects.values_list('username', flat=True))"
        )
        return docker("exec", name, "python", "manage.py", "shell", "-v", "0", "-c", probe).split()

    docker(
        "run",
        "-d",
        "--name",
        name,
        "--health-interval=2s",
        "-v",
        f"{volume}:/data",
        "-e",
        f"SECRET_KEY={secrets.token_urlsafe(50)}",
        "-e",
        "ALLOWED_HOSTS=localhost",
        "-e",
        "MIGRATE_ON_START=1",
        APP_IMAGE,
    )
    try:
        wait_for(lambda: health(name) == "healthy", 180, "the container to start")
        assert create_user("kept").returncode == 0
        for line in backup:
            shell(line)
        assert create_user("after-the-backup").returncode == 0
        for line in restore:
            shell(line)
        wait_for(lambda: health(name) == "healthy", 180, "the restored container to start")
        assert usernames() == ["kept"]
        written = create_user("after-the-restore")
        assert written.returncode == 0, written.stderr[-2000:]
    finally:
        docker("rm", "-f", "-v", name, check=False)
        docker("volume", "rm", volume, check=False)
