"""The harness's requests to the simulator: none sets out on a connection the simulator is
closing, and a request that may go out twice does, once."""

import asyncio

import httpx
import pytest

from bench.harness import KEEP_IDLE_SECONDS, direct_client, twice
from llama_simulator.app import Simulator
from llama_simulator.server import _config

URL = "http://simulator.test/_sim/requests"


def serve(*outcomes):
    """A client whose requests get the outcomes in turn: an exception raised, or a status."""
    sent = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        outcome = outcomes[len(sent) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return httpx.Response(outcome, json=[])

    return httpx.AsyncClient(transport=httpx.MockTransport(handler)), sent


async def get_twice(http: httpx.AsyncClient) -> httpx.Response:
    async with http:
        return await twice(http.get, URL)


def test_a_connection_closed_under_the_request_is_asked_again():
    closed = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    http, sent = serve(closed, 200)

    response = asyncio.run(get_twice(http))

    assert response.status_code == 200
    assert len(sent) == 2


def test_it_is_asked_again_only_once():
    http, sent = serve(httpx.ConnectError("refused"), httpx.ConnectError("refused"), 200)

    with pytest.raises(httpx.ConnectError):
        asyncio.run(get_twice(http))
    assert len(sent) == 2


def test_an_answer_is_never_asked_again_even_an_error():
    http, sent = serve(500, 200)

    response = asyncio.run(get_twice(http))

    assert response.status_code == 500
    assert len(sent) == 1


def test_the_benchmark_lets_an_idle_connection_go_before_the_simulator_closes_it():
    served = _config(Simulator(), "warning")

    assert direct_client()._transport._pool._keepalive_expiry == KEEP_IDLE_SECONDS
    assert KEEP_IDLE_SECONDS < served.timeout_keep_alive
