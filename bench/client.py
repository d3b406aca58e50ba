"""The Llama client alone: its parsing and relaying cost against plain httpx line reading.

The simulator runs in its own process; this process streams answers one after another through
`LlamaClient.stream_chat` on both protocols, and through a bare httpx stream that only reads
lines, and counts the CPU time it spent itself (time.process_time) per 1,000 tokens.

Two paces, both without a first-token delay: unpaced (0: the simulator sends as fast as it
can, so many tokens share one chunk) and 5,000 tokens/s, where events carry one or two tokens
each, closer to the real API, so the cost per event shows.

    python -m bench.client [--quick] [--answers 20] [--tokens 5000] [--paces 0,5000]
"""

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path

import httpx

from bench.harness import API_KEY, MODEL, PYTHON, Service, write_result
from chatapp.llm import ChatParams, Finish, LlamaClient, ProviderConfig, TextDelta
from chatapp.llm.protocols import PROTOCOL_ADAPTERS
from tests.support.ports import free_port, ports_from_env

MAX_TOKENS = 16_384  # the model's output limit: room for the longest answer
PATHS = {"llama": "/v1", "openai": "/compat/v1"}


def messages(tokens: int, tps: float) -> list[dict]:
    tps = tps or 1e9  # the simulator reads tps=0 as "its default pace"; this is no pace at all
    text = f"bench [sim:long tokens={tokens}] [sim:pace tps={tps:g} ttft=0]"
    return [{"role": "user", "content": text}]


async def via_client(http: httpx.AsyncClient, sim_url: str, protocol: str, prompt: list) -> dict:
    """One answer through LlamaClient: text events, and the tokens the usage reports."""
    config = ProviderConfig(sim_url + PATHS[protocol], API_KEY, protocol, max_attempts=1)
    client = LlamaClient(config, http=http)
    events, tokens = 0, 0
    params = ChatParams(MODEL, max_tokens=MAX_TOKENS)
    async with aclosing(client.stream_chat(prompt, params)) as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                events += 1
            elif isinstance(event, Finish):
                tokens = event.usage.completion_tokens
            else:
                raise RuntimeError(f"the answer failed: {event}")
    return {"events": events, "tokens": tokens}


async def via_httpx(http: httpx.AsyncClient, sim_url: str, protocol: str, prompt: list) -> dict:
    """The same request as plain httpx lines: the floor any client pays."""
    params = ChatParams(MODEL, max_tokens=MAX_TOKENS)
    body = PROTOCOL_ADAPTERS[protocol].chat_body(prompt, params, stream=True)
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "text/event-stream"}
    url = sim_url + PATHS[protocol] + "/chat/completions"
    events = 0
    async with http.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            events += line.startswith("data:")
    return {"events": events, "tokens": None}


Reader = Callable[[httpx.AsyncClient, str, str, list], Awaitable[dict]]


async def measure_one(reader: Reader, sim_url: str, protocol: str, answers: int, prompt: list):
    async with httpx.AsyncClient(timeout=httpx.Timeout(300, connect=30)) as http:
        await reader(http, sim_url, protocol, prompt)  # warm up: connection, imports, caches
        cpu, wall = time.process_time(), time.perf_counter()
        runs = [await reader(http, sim_url, protocol, prompt) for _ in range(answers)]
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return runs, cpu, wall


async def measure(sim_url: str, answers: int, tokens: int, paces: list[float]) -> list[dict]:
    rows = []
    for tps in paces:
        for protocol in ("llama", "openai"):
            for name, reader in (("httpx lines", via_httpx), ("LlamaClient", via_client)):
                runs, cpu, wall = await measure_one(
                    reader, sim_url, protocol, answers, messages(tokens, tps)
                )
                reported = [run["tokens"] for run in runs if run["tokens"] is not None]
                if reported and reported != [tokens] * answers:
                    raise RuntimeError(f"{name} ({protocol}) got {reported}, not {tokens} each")
                events = sum(run["events"] for run in runs)
                rows.append(figures(tps, protocol, name, tokens * answers, events, cpu, wall))
                print_row(rows[-1])
    return rows


def figures(tps: float, protocol: str, reader: str, tokens: int, events: int, cpu, wall) -> dict:
    return {
        "pace_tps": tps,
        "protocol": protocol,
        "reader": reader,
        "tokens": tokens,
        "events": events,
        "tokens_per_event": tokens / events,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "events_per_second": events / wall,
        "events_per_cpu_second": events / cpu,
        "cpu_seconds_per_1000_tokens": cpu / tokens * 1000,
    }


def print_row(row: dict) -> None:
    print(
        f"client (pace {row['pace_tps']:g}, {row['protocol']}, {row['reader']}):"
        f" {row['events']:,} events in"
        f" {row['wall_seconds']:.2f} s = {row['events_per_second']:,.0f}/s;"
        f" {row['events_per_cpu_second']:,.0f} events per CPU second;"
        f" {row['cpu_seconds_per_1000_tokens'] * 1000:.1f} ms CPU per 1,000 tokens",
        flush=True,
    )


def start_simulator(log_dir: Path) -> tuple[Service, str]:
    port = free_port(ports_from_env("BENCH_SIM_PORTS"))
    args = ["manage.py", "llama_simulator", "--port", str(port), "--api-key", API_KEY]
    env = {**os.environ, "SECRET_KEY": "bench-" + uuid.uuid4().hex, "DEBUG": "0"}
    env.update(LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    simulator = Service("simulator", [PYTHON, *args, "--first-token-delay", "0"], env, log_dir)
    try:
        simulator.wait_for_port(port)
    except BaseException:
        simulator.stop()
        raise
    return simulator, f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--answers", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--paces", default="0,5000", help="tokens/s, comma-separated; 0: none")
    args = parser.parse_args(argv)
    answers, tokens = (2, 500) if args.quick else (args.answers, args.tokens)
    with tempfile.TemporaryDirectory(prefix="ltc-bench-client-") as tmp:
        simulator, sim_url = start_simulator(Path(tmp))
        try:
            paces = [float(pace) for pace in args.paces.split(",")]
            rows = asyncio.run(measure(sim_url, answers, tokens, paces))
        finally:
            simulator.stop()
    result = {"benchmark": "client", "quick": args.quick, "rows": rows}
    print(f"  -> {write_result('client', result)}")
    return result


if __name__ == "__main__":
    main()
