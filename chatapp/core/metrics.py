"""Prometheus metrics, exposed at /metrics.

Under `manage.py serve` with several processes, each process writes its values to files in
PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode, set up by the supervisor) and
/metrics adds them up across the live processes, whichever one answers the scrape.
"""

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_STREAMS = Gauge(
    "chat_active_streams", "Generations streaming in this server", multiprocess_mode="livesum"
)
WEBSOCKET_CONNECTIONS = Gauge(
    "chat_websocket_connections", "Open chat websockets", multiprocess_mode="livesum"
)
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
TOOL_CALLS = Counter(
    "chat_tool_calls_total",
    "Tool calls answers made, by outcome (ok, error, declined, stopped)",
    ["outcome"],
)
SAFETY_VERDICTS = Counter(
    "chat_safety_verdicts_total",
    "Questions and answers Llama Guard flagged, by stage, category and decision (flag, block)",
    ["stage", "category", "decision"],
)
SAFETY_FAILURES = Counter(
    "chat_safety_failures_total",
    "Screenings that got no verdict, by stage and what the policy did (fail_open, fail_closed)",
    ["stage", "outcome"],
)
SAFETY_REVIEWS = Counter(
    "chat_safety_reviews_total",
    "Reviewers' decisions on flagged messages (reviewed, false_positive)",
    ["decision"],
)
