"""The container's own command, run here for real: deploy/docker-entrypoint.sh starting daphne
with production settings, then probed over HTTP as the proxy, Prometheus and Docker would."""

import json
import math
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from chatapp.core.logs import credential_route_starts
from chatapp.llm import KNOWN_MODELS
from tests.deploy.files import ROOT, clean_env
from tests.support.polling import wait_for
from tests.support.ports import free_port, wait_for_port
from tests.support.simulator import SimulatorOptions

pytestmark = pytest.mark.slow

LISTENING = re.compile(r"Listening on TCP address [\d.]+:(\d+)")
HOST = "chat.example.com"
TOKEN = "scrape-token-for-the-deploy-test"
SIM_KEY = "sim-key-for-the-deploy-test"
ENTRYPOINT = str(ROOT / "deploy/docker-entrypoint.sh")


class Server:
    def __init__(self, tmp: Path, **env: str):
        self.stdout_path = tmp / "stdout.log"
        self.stderr_path = tmp / "stderr.log"
        base = {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": HOST,
            "PORT": "0",  # daphne binds a free port and logs which
            "METRICS_TOKEN": TOKEN,
        }
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [ENTRYPOINT, "serve"],
                cwd=ROOT,
                env=clean_env(**base, **env),
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        try:
            self.port = wait_for(self._listening_port, "the server to start listening")
        except TimeoutError:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{self.port}"

    def _listening_port(self) -> int | None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{self.stderr_path.read_text()}")
        listening = LISTENING.search(self.stdout_path.read_text())
        return int(listening.group(1)) if listening else None

    def get(self, path: str, **headers: str) -> httpx.Response:
        if self.process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{self.stderr_path.read_text()[-3000:]}")
        return httpx.get(self.url + path, headers=headers, timeout=10)

    def log_lines(self) -> list[str]:
        return self.stdout_path.read_text().splitlines()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def static_root(tmp_path_factory) -> Path:
    """Static files collected with hashed names, as the image build does."""
    root = tmp_path_factory.mktemp("static")
    env = clean_env(SECRET_KEY="collectstatic-only", STATIC_MANIFEST="1", STATIC_ROOT=str(root))
    subprocess.run(
        ["python", "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, static_root, simulators):
    tmp = tmp_path_factory.mktemp("server")
    simulator = simulators.get(SimulatorOptions(api_key=SIM_KEY))
    server = Server(
        tmp,
        DATABASE_URL=f"sqlite:///{tmp}/db.sqlite3",
        STATIC_ROOT=str(static_root),
        MIGRATE_ON_START="1",
        LLAMA_API_BASE_URL=simulator.native_url,
        LLAMA_API_KEY=SIM_KEY,
        LLAMA_DEFAULT_MODEL=KNOWN_MODELS[0],
        **redis_from_the_suite(),
    )
    server.db = tmp / "db.sqlite3"
    yield server
    server.stop()


def redis_from_the_suite() -> dict[str, str]:
    """On the PostgreSQL + Redis run, the server's channel layer is Redis too."""
    from django.conf import settings

    return {"REDIS_URL": settings.REDIS_URL} if settings.REDIS_URL else {}


def with_proxy_headers(**extra: str) -> dict[str, str]:
    """What nginx adds in front of daphne, as in deploy/nginx.conf."""
    return {
        "Host": HOST,
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        **extra,
    }


def test_it_migrates_on_start_and_reports_healthy(server):
    response = server.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok"}
    with sqlite3.connect(server.db) as db:
        applied = {app for (app,) in db.execute("SELECT app FROM django_migrations")}
    assert {"chat", "teams", "accounts"} <= applied


def raw_request(server: Server, head: bytes, body: bytes = b"") -> bytes:
    """Send `head` (and `body`) over a socket of its own; everything the server answers until
    it ends its side of the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(head + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def test_a_body_declared_larger_than_any_address_takes_is_refused_before_it_is_sent(server):
    """No proxy in front (the single container, `make run`): the server answers 413 as soon
    as the headers say it, without waiting for (or keeping) any of the body."""
    head = (
        b"POST /api/uploads/ HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=B\r\n"
        b"Content-Length: 10000000000\r\n\r\n"
    )
    answer = raw_request(server, head)
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in status
    error = json.loads(body)["error"]
    assert error["code"] == "request_too_large"
    assert "42.5 MB" in error["message"]


def test_a_chunked_body_growing_past_the_limit_is_refused_and_the_server_goes_on(server):
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"100000\r\n" + b" " * 0x100000 + b"\r\n"  # 1 MiB
    answer = raw_request(server, head, chunk * 44 + b"0\r\n\r\n")  # 44 MiB: over 42.5 MB
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["error"] == {
        "code": "request_too_large",
        "type": "invalid_request_error",
        "param": None,
        "message": "The request body is over 42.5 MB, the most this server takes.",
    }
    assert server.get("/healthz").status_code == 200


def test_a_body_as_large_as_the_limit_reaches_the_app(server):
    """42.5 MB, the /v1 limit with a message's images as base64: the app answers it."""
    limit = 2_621_440 + 4 * math.ceil(30 * 1024 * 1024 / 3)
    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=b" " * limit,
        headers=with_proxy_headers(),
        timeout=30,
    )
    assert response.status_code == 401  # no API key: the app read the request
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_it_is_ready_when_the_upstream_lists_models(server):
    response = server.get("/readyz", Authorization=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response.json()["upstream"] == "ok"
    assert "upstream" not in server.get("/readyz").json()


def test_plain_http_is_redirected_unless_the_proxy_says_https(server):
    redirect = server.get("/accounts/login/", Host=HOST)
    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"https://{HOST}/accounts/login/"
    page = server.get("/accounts/login/", **with_proxy_headers())
    assert page.status_code == 200
    assert page.headers["strict-transport-security"].startswith("max-age=31536000")
    assert "Secure" in page.headers["set-cookie"]


def test_static_files_have_hashed_names_and_cache_forever(server):
    page = server.get("/accounts/login/", **with_proxy_headers()).text
    hashed = re.findall(r"/static/[\w/.-]+\.[0-9a-f]{12}\.(?:css|js)", page)
    assert hashed, "pages link static files by hashed names"
    asset = server.get(hashed[0], **with_proxy_headers())
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]
    preloads = re.findall(r'<link rel="modulepreload" href="([^"]+)">', page)
    assert preloads and all(re.search(r"\.[0-9a-f]{12}\.js$", url) for url in preloads), preloads


def test_collected_static_files_are_served_compressed(server):
    page = server.get("/accounts/login/", **with_proxy_headers()).text
    script = re.search(r"/static/js/site\.[0-9a-f]{12}\.js", page).group(0)
    asset = server.get(script, **with_proxy_headers(**{"Accept-Encoding": "gzip"}))
    assert asset.status_code == 200
    assert asset.headers["content-encoding"] == "gzip"
    assert "export function currentTheme" in asset.text  # httpx unpacks it
    plain = server.get(script, **with_proxy_headers(**{"Accept-Encoding": "identity"}))
    assert "content-encoding" not in plain.headers


def test_es_module_imports_name_the_hashed_files(static_root):
    main = next((static_root / "js" / "chat").glob("main.*.js"))
    imports = re.findall(r'from "([^"]+)"', main.read_text())
    assert imports
    assert all(re.search(r"\.[0-9a-f]{12}\.js$", name) for name in imports), imports
    markdown = next((static_root / "js" / "chat").glob("markdown.*.js")).read_text()
    (loaded_later,) = re.findall(r'import\("([^"]+)"\)', markdown)  # highlight.js, when needed
    assert re.search(r"/highlight\.min\.[0-9a-f]{12}\.js$", loaded_later), loaded_later


def test_metrics_need_the_token(server):
    assert server.get("/metrics").status_code == 401
    scraped = server.get("/metrics", Authorization=f"Bearer {TOKEN}")
    assert scraped.status_code == 200
    assert "chat_active_streams" in scraped.text
    assert "chat_time_to_first_token_seconds_bucket" in scraped.text


def test_logs_are_json_lines_carrying_the_proxy_request_id(server):
    response = server.get("/accounts/login/", **with_proxy_headers(**{"X-Request-ID": "edge-42"}))
    assert response.headers["x-request-id"] == "edge-42"
    lines = [json.loads(line) for line in server.log_lines()]
    (access,) = [line for line in lines if line.get("request_id") == "edge-42"]
    assert access["logger"] == "chatapp.access"
    assert access["path"] == "/accounts/login/"
    assert access["status"] == 200
    assert all(line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR") for line in lines)
    assert SIM_KEY not in server.stdout_path.read_text()


def test_the_database_down_fails_health_but_not_the_process(tmp_path):
    closed = free_port()
    server = Server(
        tmp_path,
        DATABASE_URL=f"postgres://chat@127.0.0.1:{closed}/chat",
        LLAMA_API_BASE_URL=f"http://127.0.0.1:{closed}/v1",
    )
    try:
        health = server.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {
            "status": "error",
            "database": "unreachable",
            "channel_layer": "ok",
        }
        ready = server.get("/readyz", Authorization=f"Bearer {TOKEN}")
        assert ready.status_code == 503
        assert ready.json()["upstream"] == "unreachable"
        assert server.process.poll() is None
        warnings = [json.loads(line) for line in server.log_lines()]
        assert any(w.get("component") == "database" for w in warnings)
    finally:
        assert server.stop() in (0, -signal.SIGTERM)


def test_a_bad_switch_stops_the_container_with_a_clear_message():
    result = subprocess.run(
        [ENTRYPOINT, "serve"],
        cwd=ROOT,
        env=clean_env(MIGRATE_ON_START="maybe"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 64
    assert "MIGRATE_ON_START must be one of" in result.stderr


def test_other_commands_run_as_given():
    result = subprocess.run(
        [ENTRYPOINT, "python", "-c", "print('as given')"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert result.stdout == "as given\n"


@pytest.fixture(scope="module")
def nginx_dir(tmp_path_factory) -> Path:
    """Where the nginx below keeps its files: its access log is access.log."""
    return tmp_path_factory.mktemp("nginx")


@contextmanager
def running_nginx(tmp: Path, upstream_port: int):
    """deploy/nginx.conf for real, in front of a loopback port (the compose names swapped for
    ours); its access log is tmp/access.log, every error line it writes goes to tmp/error.log."""
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed")
    port = free_port()
    conf = (ROOT / "deploy/nginx.conf").read_text()
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("/var/log/nginx/", f"{tmp}/")
    conf = re.sub(r"\n\s*resolver [^\n]+\n", "\n", conf)
    conf = conf.replace("http://app:8000", f"http://127.0.0.1:{upstream_port}")
    (tmp / "site.conf").write_text(conf)
    temp_paths = " ".join(
        f"{name}_temp_path {tmp}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # The http block as the nginx image has it: its access log in the "main" format.
    main_log = (
        'log_format main \'$remote_addr - $remote_user [$time_local] "$request" $status'
        ' $body_bytes_sent "$http_referer" "$http_user_agent"\';'
        f" access_log {tmp}/access.log main;"
    )
    # The image's error log: everything from the level nginx logs at by default (error) up.
    (tmp / "nginx.conf").write_text(
        f"pid {tmp}/nginx.pid; error_log {tmp}/error.log; daemon off;\n"
        f"events {{}}\nhttp {{ {main_log} {temp_paths} include {tmp}/site.conf; }}\n"
    )
    process = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
    wait_for_port(port, process, "nginx")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def nginx(server, nginx_dir):
    with running_nginx(nginx_dir, server.port) as address:
        yield address


def test_nginx_forwards_pages_with_its_request_id_and_hides_metrics(nginx, server):
    page = httpx.get(
        f"http://{nginx}/accounts/login/",
        headers={"Host": HOST, "X-Forwarded-Proto": "https", "X-Request-ID": "from-a-client"},
    )
    assert page.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", page.headers["x-request-id"])
    assert page.headers["server"] == "nginx"  # not its version, on pages and its own errors
    hidden = httpx.get(f"http://{nginx}/metrics", headers={"Host": HOST})
    assert hidden.status_code == 404 and hidden.headers["server"] == "nginx"
    redirect = httpx.get(f"http://{nginx}/accounts/login/", headers={"Host": HOST})
    assert redirect.headers["location"] == f"https://{HOST}/accounts/login/"


def test_nginx_passes_the_host_with_its_port_to_every_page(nginx, server):
    """Django's CSRF check compares a form's or a script's Origin with scheme, host and port:
    an address that lost its port (a site on :8443, or localhost:8080) refused every write."""
    for path in ("/accounts/login/", "/api/uploads/", "/api/keys/", "/v1/models"):
        redirect = httpx.get(f"http://{nginx}{path}", headers={"Host": f"{HOST}:8443"})
        assert redirect.status_code == 301, path
        assert redirect.headers["location"] == f"https://{HOST}:8443{path}", path


def test_nginx_logs_no_credential_query_or_referrer(nginx, nginx_dir):
    """The proxy's access log, like the app's: a link that is itself a credential (any route
    the app blanks in its own log) is named by its route, and query strings (searches) and
    referrers (a share page's address, sent with every file the page loads) are left out."""
    secret = "Cred3ntial-0123456789abcdef"
    paths = [f"{start}{secret}/" for start in credential_route_starts()]
    paths += [f"/s/{secret}", f"/api/conversations/?q={secret}"]
    log = nginx_dir / "access.log"
    before = len(log.read_text().splitlines())
    for path in paths:
        referrer = f"https://{HOST}/s/{secret}/"
        httpx.get(f"http://{nginx}{path}", headers={"Host": HOST, "Referer": referrer})

    def logged() -> list[str] | None:
        found = log.read_text().splitlines()[before:]
        return found if len(found) == len(paths) else None

    lines = wait_for(logged, "nginx to log every request")
    assert secret not in "\n".join(lines)
    assert "/invite/[redacted]" in lines[paths.index(f"/invite/{secret}/")]
    assert '"GET /api/conversations/ HTTP/1.1"' in lines[-1]


async def test_nginx_upgrades_the_chat_websocket(nginx):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    address, port = nginx.split(":")
    # The URL names the site (so Host is right); the connection goes to nginx's address. The
    # page's origin is the site's: https (the app redirects to it), this host and port.
    origin = f"https://{HOST}:{port}"
    async with connect(
        f"ws://{HOST}:{port}/ws/chat/", host=address, port=int(port), origin=origin
    ) as socket_:
        with pytest.raises(ConnectionClosed) as closed:
            await socket_.recv()
    # Anonymous: the app itself closed it, so the upgrade went through nginx to daphne.
    assert closed.value.rcvd.code == 4401


def test_nginx_logs_no_credential_when_the_app_is_down_or_the_body_too_large(tmp_path):
    """nginx's own error lines (a replica restarting: connection refused; a body over the
    limit) name the whole request line and the referrer, which the access log leaves out:
    none may reach the proxy's output."""
    secret = "Cred3ntial-0123456789abcdef"
    nothing_listens = free_port()
    with running_nginx(tmp_path, nothing_listens) as address:
        referrer = {"Host": HOST, "Referer": f"https://{HOST}/s/{secret}/"}
        for start in credential_route_starts():
            down = httpx.get(f"http://{address}{start}{secret}/?next={secret}", headers=referrer)
            assert down.status_code == 502
        too_large = httpx.post(
            f"http://{address}/invite/{secret}/", content=b"x" * 4 * 1024 * 1024, headers=referrer
        )
        assert too_large.status_code == 413
    # nginx has exited, so every line it wrote is in its files.
    logs = (tmp_path / "error.log").read_text() + (tmp_path / "access.log").read_text()
    assert "/invite/[redacted]" in logs
    assert secret not in logs
