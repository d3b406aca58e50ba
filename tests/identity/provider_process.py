"""Starts the test OpenID Connect provider (tests/identity/provider) in a daphne subprocess on
a free loopback port, on its own SQLite database, and drives its side of a sign-in."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "llama-team-chat"
CLIENT_SECRET = "test-client-secret-0123456789"
PASSWORD = "provider-password-42"


@dataclass
class Provider:
    origin: str
    env: dict[str, str]
    claims_path: Path
    log_path: Path

    @property
    def issuer(self) -> str:
        return f"{self.origin}/o"

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=self.env, check=True)

    def add_person(self, username: str, **claims) -> None:
        """A person who can sign in at the provider, with these claims (replacing earlier ones)."""
        self.manage(
            "provider_setup",
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--user",
            f"{username}:{PASSWORD}",
        )
        self.set_claims(username, **claims)

    def set_claims(self, username: str, **claims) -> None:
        everyone = json.loads(self.claims_path.read_text())
        everyone[username] = claims
        self.claims_path.write_text(json.dumps(everyone))

    def allow_redirects_to(self, app_origin: str) -> None:
        self.manage(
            "provider_setup",
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--redirect-uri",
            f"{app_origin}/oidc/callback/",
            "--logout-uri",
            f"{app_origin}/accounts/login/",
        )

    def browser_session(self, username: str) -> httpx.Client:
        """An HTTP client signed in at the provider as `username` (its own session cookie)."""
        http = httpx.Client(base_url=self.origin, timeout=10)
        http.get("/login/")
        http.post(
            "/login/",
            data={
                "username": username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": http.cookies["provider_csrftoken"],
                "next": "/",
            },
            headers={"Referer": f"{self.origin}/login/"},
        )
        assert "provider_sessionid" in http.cookies, (
            f"could not sign in at the provider as {username}"
        )
        return http

    def authorize(self, http: httpx.Client, authorize_url: str) -> str:
        """Follow the app's redirect to the provider; returns where the provider sends back."""
        response = http.get(authorize_url)
        assert response.status_code == 302, (response.status_code, response.text[:500])
        return response.headers["location"]


def wait_until_serving(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the test provider exited:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the test provider did not answer:\n{log_path.read_text()[-3000:]}")


@contextmanager
def run_provider(tmp_dir: Path) -> Iterator[Provider]:
    claims_path = tmp_dir / "claims.json"
    claims_path.write_text("{}")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.identity.provider.settings",
        "OIDC_PROVIDER_DB": str(tmp_dir / "provider.sqlite3"),
        "OIDC_PROVIDER_CLAIMS": str(claims_path),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    provider = Provider(f"http://127.0.0.1:{port}", env, claims_path, tmp_dir / "provider.log")
    provider.manage("migrate", "--noinput", "-v", "0")
    provider.manage(
        "provider_setup",
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
        "--redirect-uri",
        "http://testserver/oidc/callback/",
    )
    with provider.log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "--fd",
                str(listener.fileno()),
                "tests.identity.provider.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
        )
    listener.close()
    try:
        discovery = f"{provider.issuer}/.well-known/openid-configuration"
        wait_until_serving(process, discovery, provider.log_path)
        yield provider
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
