"""The relay benchmark's harness works end to end: short answers arrive whole, both ways.

Starts the simulator and daphne as real processes, logs in through the login form, and streams
two short answers straight from the simulator and through the websocket. Nothing is timed.
"""

import pytest

from bench import floor, relay
from bench.harness import Stack, StackOptions, run

pytestmark = [pytest.mark.bench, pytest.mark.slow]

TOKENS = 30


def test_relay_harness_delivers_every_token_with_the_same_text():
    options = StackOptions(tokens_per_second=1000, first_token_delay=0, extra_env=relay.RELAY_ENV)
    with Stack(options) as stack:
        result = run(relay.measure(stack, pairs=2, tokens=TOKENS, tps=1000, ttft=0))

    summary, pairs = result["summary"], result["pairs"]
    assert summary["failed"] == 0, [pair["error"] for pair in pairs]
    assert len(pairs) == 2
    assert summary["all_text_equal"]
    assert summary["all_tokens_delivered"]
    assert [pair["app_tokens"] for pair in pairs] == [TOKENS, TOKENS]
    assert [pair["usage_tokens"] for pair in pairs] == [TOKENS, TOKENS]


@pytest.mark.parametrize("server", floor.SERVERS)
def test_the_bare_relay_delivers_every_token_with_the_same_text(server):
    result = floor.measure(streams=3, tokens=10, arrivals=100, pin=False, server=server)

    assert result["failed"] == 0
    assert result["tokens_delivered"] == 30
    assert result["all_text_equal"]
