"""/metrics: off until protected by a token or networks; exposes the chat's own metrics."""

import ipaddress

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from chatapp.core import metrics

TOKEN = "metrics-token-0123456789"
CHAT_METRICS = {
    "chat_active_streams",
    "chat_websocket_connections",
    "chat_time_to_first_token_seconds",
    "chat_stream_duration_seconds",
    "chat_tokens_relayed",
    "chat_upstream_errors",
    "chat_upstream_retries",
}


def networks(*cidrs):
    return [ipaddress.ip_network(c) for c in cidrs]


def scrape(client, **headers) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200
    families = text_string_to_metric_families(response.content.decode())
    return {family.name: family for family in families}


def sample(families: dict, family: str, name: str, **labels) -> float:
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0.0


def test_metrics_are_off_until_configured(client, db):
    with override_settings(METRICS_TOKEN="", METRICS_ALLOWED_NETWORKS=[]):
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 404


@override_settings(METRICS_TOKEN=TOKEN, METRICS_ALLOWED_NETWORKS=[])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN])
def test_a_wrong_or_missing_token_is_refused(client, db, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get("/metrics", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"chat_" not in response.content


@override_settings(METRICS_TOKEN=TOKEN, METRICS_ALLOWED_NETWORKS=[])
def test_the_token_reads_every_chat_metric(client, db):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response["Content-Type"].startswith("text/plain")
    families = {f.name for f in text_string_to_metric_families(response.content.decode())}
    assert CHAT_METRICS <= families


@override_settings(METRICS_TOKEN=TOKEN, METRICS_ALLOWED_NETWORKS=[])
def test_recorded_values_show_up(client, db):
    before = scrape(client)
    metrics.UPSTREAM_ERRORS.labels(code="rate_limited").inc()
    metrics.TIME_TO_FIRST_TOKEN.observe(0.3)
    metrics.TOKENS_RELAYED.inc(42)
    after = scrape(client)

    def delta(family, name, **labels):
        return sample(after, family, name, **labels) - sample(before, family, name, **labels)

    errors = "chat_upstream_errors_total"
    assert delta("chat_upstream_errors", errors, code="rate_limited") == 1
    ttft = "chat_time_to_first_token_seconds"
    assert delta(ttft, ttft + "_bucket", le="0.5") == 1
    assert delta(ttft, ttft + "_bucket", le="0.25") == 0
    assert delta("chat_tokens_relayed", "chat_tokens_relayed_total") == 42


@override_settings(METRICS_TOKEN="", METRICS_ALLOWED_NETWORKS=networks("10.0.0.0/8", "::1"))
@pytest.mark.parametrize(
    ("address", "status"),
    [("10.1.2.3", 200), ("::ffff:10.1.2.3", 200), ("::1", 200), ("192.168.1.5", 403), ("", 403)],
)
def test_network_allow_list(client, db, address, status):
    assert client.get("/metrics", REMOTE_ADDR=address).status_code == status


@override_settings(METRICS_TOKEN=TOKEN, METRICS_ALLOWED_NETWORKS=networks("10.0.0.0/8"))
def test_with_both_configured_both_must_pass(client, db):
    inside, outside = {"REMOTE_ADDR": "10.0.0.9"}, {"REMOTE_ADDR": "172.16.0.1"}
    good = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    assert client.get("/metrics", **inside).status_code == 401
    assert client.get("/metrics", **outside, **good).status_code == 403
    assert client.get("/metrics", **inside, **good).status_code == 200
