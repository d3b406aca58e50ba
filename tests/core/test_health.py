"""/healthz (liveness) and /readyz (readiness), served in-process; tests/deploy/test_server.py
drives a real daphne with the database down."""

import asyncio

import pytest
from django.test import override_settings

from chatapp.core.health import forget_upstream_probes
from tests.support.ports import free_port
from tests.support.simulator import SimulatorOptions

KEY = "sim-key-for-readiness"
METRICS_TOKEN = "metrics-token-for-readiness"
GUARDED = {"HTTP_AUTHORIZATION": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture(autouse=True)
def fresh_probes(settings):
    """Each test probes the upstream afresh; the readiness guard is the metrics token."""
    settings.METRICS_TOKEN = METRICS_TOKEN
    forget_upstream_probes()
    yield
    forget_upstream_probes()


@pytest.fixture(scope="module")
def simulator_options() -> SimulatorOptions:
    """The site's Llama API is the simulator, accepting KEY only."""
    return SimulatorOptions(api_key=KEY, site_provider=True)


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
        "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
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


def test_readyz_checks_the_upstream_models(client, db, sim):
    response = client.get("/readyz", **GUARDED)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "channel_layer": "ok",
        "upstream": "ok",
        "default_model": "ok",
        "models": "ok",
    }


def test_readyz_fails_when_the_upstream_rejects_the_key(client, db, sim):
    with override_settings(LLAMA_API_KEY="wrong-key-123456"):
        response = client.get("/readyz", **GUARDED)
    assert response.status_code == 503
    assert response.json()["upstream"] == "HTTP 401"
    assert response.json()["status"] == "error"
    assert "wrong-key-123456" not in response.content.decode()


def test_readyz_fails_when_the_upstream_is_unreachable(client, db):
    with override_settings(LLAMA_API_BASE_URL=f"http://127.0.0.1:{free_port()}/v1"):
        response = client.get("/readyz", **GUARDED)
    assert response.status_code == 503
    assert response.json()["upstream"] == "unreachable"
    assert "default_model" not in response.json()


def test_readyz_points_out_a_default_model_the_upstream_lacks(client, db, sim):
    with override_settings(LLAMA_DEFAULT_MODEL="Llama-9-Imaginary"):
        response = client.get("/readyz", **GUARDED)
    assert response.status_code == 200
    assert response.json()["default_model"] == "not offered by the upstream"


def test_readyz_names_the_listed_models_the_upstream_lacks_without_failing(client, db, sim):
    """A model the server has not loaded fails the chats on it, not the whole site."""
    models = ["Llama-3.3-8B-Instruct", "qwen2.5:32b", "Llama-3.3-70B-Instruct", "llama3.1:8b"]
    with override_settings(LLAMA_MODELS=models, LLAMA_DEFAULT_MODEL="mistral:7b"):
        response = client.get("/readyz", **GUARDED)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["default_model"] == "not offered by the upstream"
    assert response.json()["models"] == "not offered by the upstream: qwen2.5:32b, llama3.1:8b"


def test_liveness_does_not_depend_on_the_upstream(client, db):
    with override_settings(LLAMA_API_BASE_URL=f"http://127.0.0.1:{free_port()}/v1"):
        assert client.get("/healthz").status_code == 200


def test_readyz_leaves_the_upstream_out_for_anyone_the_metrics_guard_refuses(
    client, db, sim, settings
):
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong-token"}):
        for _ in range(5):
            response = client.get("/readyz", **headers)
            assert response.status_code == 200
            assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok"}
    settings.METRICS_TOKEN = ""  # metrics off: nobody gets the upstream part
    assert "upstream" not in client.get("/readyz", **GUARDED).json()
    assert sim.calls.get("GET /models", 0) == 0


def test_readyz_probes_the_upstream_once_per_interval(client, db, sim):
    for _ in range(40):
        assert client.get("/readyz", **GUARDED).json()["upstream"] == "ok"
    assert sim.calls["GET /models"] == 1
    forget_upstream_probes()  # the interval has passed
    client.get("/readyz", **GUARDED)
    assert sim.calls["GET /models"] == 2


async def test_readyz_callers_at_the_same_moment_share_one_probe(async_client, db, sim):
    auth = {"Authorization": GUARDED["HTTP_AUTHORIZATION"]}
    requests = [async_client.get("/readyz", headers=auth) for _ in range(20)]
    responses = await asyncio.gather(*requests)
    assert {r.json()["upstream"] for r in responses} == {"ok"}
    assert sim.calls["GET /models"] == 1
