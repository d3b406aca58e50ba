"""/healthz (liveness) and /readyz (readiness), served in-process; tests/deploy/test_server.py
drives a real daphne with the database down."""

import socket

import pytest
from django.test import override_settings

from chatapp.llm import KNOWN_MODELS
from chatapp.llm.simulator import run_simulator

KEY = "sim-key-for-readiness"


@pytest.fixture(scope="module")
def simulator():
    with run_simulator(api_key=KEY) as sim:
        yield sim


@pytest.fixture
def upstream(simulator):
    with override_settings(
        LLAMA_API_BASE_URL=simulator.native_url,
        LLAMA_API_KEY=KEY,
        LLAMA_DEFAULT_MODEL=KNOWN_MODELS[0],
    ):
        yield simulator


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthz_reports_the_database_and_the_channel_layer(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_probes_refuse_writes(client, db):
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.post(path).status_code == 405


def test_healthz_fails_when_the_channel_layer_is_unreachable(client, db):
    layer = {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [f"redis://127.0.0.1:{closed_port()}/0"]},
    }
    with override_settings(CHANNEL_LAYERS={"default": layer}):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": "ok",
        "channel_layer": "unreachable",
    }


def test_probes_answer_whatever_the_host_header(client, db):
    """The container health check and Prometheus use internal addresses, not ALLOWED_HOSTS."""
    assert client.get("/healthz", HTTP_HOST="10.9.8.7:8000").status_code == 200
    assert client.get("/accounts/login/", HTTP_HOST="10.9.8.7:8000").status_code == 400


@override_settings(SECURE_SSL_REDIRECT=True)
def test_probes_are_not_redirected_to_https(client, db):
    assert client.get("/healthz").status_code == 200
    redirect = client.get("/accounts/login/")
    assert redirect.status_code == 301
    assert redirect["Location"].startswith("https://")


def test_readyz_checks_the_upstream_models(client, db, upstream):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "channel_layer": "ok",
        "upstream": "ok",
        "default_model": "ok",
    }


def test_readyz_fails_when_the_upstream_rejects_the_key(client, db, upstream):
    with override_settings(LLAMA_API_KEY="wrong-key-123456"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["upstream"] == "HTTP 401"
    assert response.json()["status"] == "error"
    assert "wrong-key-123456" not in response.content.decode()


def test_readyz_fails_when_the_upstream_is_unreachable(client, db):
    with override_settings(LLAMA_API_BASE_URL=f"http://127.0.0.1:{closed_port()}/v1"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["upstream"] == "unreachable"
    assert "default_model" not in response.json()


def test_readyz_points_out_a_default_model_the_upstream_lacks(client, db, upstream):
    with override_settings(LLAMA_DEFAULT_MODEL="Llama-9-Imaginary"):
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["default_model"] == "not offered by the upstream"


def test_liveness_does_not_depend_on_the_upstream(client, db):
    with override_settings(LLAMA_API_BASE_URL=f"http://127.0.0.1:{closed_port()}/v1"):
        assert client.get("/healthz").status_code == 200
