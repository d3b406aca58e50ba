"""Prometheus metrics, exposed at /metrics."""

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_STREAMS = Gauge("chat_active_streams", "Generations streaming in this process")
WEBSOCKET_CONNECTIONS = Gauge("chat_websocket_connections", "Open chat websockets")
TIME_TO_FIRST_TOKEN = Histogram(
    "chat_time_to_first_token_seconds",
    "From the request upstream to the first text delta",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
STREAM_DURATION = Histogram(
    "chat_stream_duration_seconds",
    "From the request upstream to the end of the answer",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
TOKENS_RELAYED = Counter("chat_tokens_relayed_total", "Completion tokens relayed to browsers")
UPSTREAM_ERRORS = Counter(
    "chat_upstream_errors_total", "Failed generations by error code", ["code"]
)
UPSTREAM_RETRIES = Counter("chat_upstream_retries_total", "Retries of upstream requests")
