"""The floor: the least server CPU a bare Python relay spends per relayed token on this machine.

`bench/concurrency.py --only chat` reports daphne's CPU per 1,000 tokens for the app. This puts
a figure beside it: the same workload through a relay that does nothing the app does not also
have to do, so the difference is what the app's own work costs (sessions, the database, the
channel layer, checkpoints, Django) and the floor is what no Python relay on this machine can
go under.

The relay (its own process, on uvloop) accepts websockets and, for each JSON text frame
{"content": ...}, POSTs a streaming chat completion to the simulator's OpenAI-compatible API with
one shared aiohttp session, reads the SSE lines, json-decodes each data line and sends every
content delta to that socket as its own frame {"type": "message.delta", "delta": text, "seq": n},
then {"type": "message.done"} at [DONE]. No database, no Django, no coalescing; one answer at a
time per socket. `--server` picks what serves the sockets:

- websockets (the default): the `websockets` library's asyncio server (`--serve`).
- daphne: the same relay as a plain ASGI application (`application` below, no Django, no
  Channels) served as the project serves its app, `python -m chatapp.core.server` (daphne on
  uvloop, writing at once); the upstream URL reaches it in FLOOR_UPSTREAM.

The workload is the chat-pace level of bench/concurrency.py: N answers of T tokens at 30 tokens/s
(first token after 0.3 s) from `manage.py llama_simulator`, stamped ([sim:stamp]), starting at
A a second at the times paced_batch draws (`harness.arrival_delays`); no direct control
streams here. With --pin the relay runs on core 0, the simulator and this client on core 1.

Figures: tokens delivered and the text against the simulator's non-streamed answer to the same
request, the relay's CPU per 1,000 tokens over the run and its wait for a core, the lag of each
chunk (arrival minus the simulator's stamp) and the time to first token from the send.

    python -m bench.floor [--streams N] [--tokens T] [--arrivals A] [--pin]
        [--server {websockets,daphne}]
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

if __package__ in (None, ""):  # run as `python bench/floor.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    API_KEY,
    CLIENT_CPUS,
    MODEL,
    PYTHON,
    SERVER_CPUS,
    Service,
    Stream,
    arrival_delays,
    chat_pace_prompts,
    direct_client,
    median,
    own_cpu_seconds,
    percentile,
    run,
    service_env,
    twice,
    write_result,
)
from llama_simulator.answers import tokenize  # noqa: E402
from tests.support.ports import free_port, ports_from_env  # noqa: E402

TPS, TTFT = 30.0, 0.3
SERVERS = ("websockets", "daphne")
DONE = json.dumps({"type": "message.done"})
UPSTREAM_HEADERS = {"Authorization": f"Bearer {API_KEY}", "Accept": "text/event-stream"}


def upstream_body(content: str, stream: bool = True) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": stream}


# --- the relay (its own process) -----------------------------------------------------------


def completions_url(upstream: str) -> str:
    return f"{upstream}/compat/v1/chat/completions"


def upstream_session():
    """The one aiohttp session a relay process shares; create it in the loop that uses it."""
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),  # the default 100 connections would queue answers
        timeout=aiohttp.ClientTimeout(total=None),
        trust_env=False,
    )


async def stream_answer(
    http, url: str, content: str, send_text: Callable[[str], Awaitable[None]]
) -> None:
    """Relay one answer: a frame per content delta, then message.done."""
    async with http.post(url, json=upstream_body(content), headers=UPSTREAM_HEADERS) as r:
        if r.status != 200:
            await send_text(json.dumps({"type": "message.done", "error": f"HTTP {r.status}"}))
            return
        seq = 0
        async for line in r.content:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            choices = json.loads(data)["choices"]
            text = choices[0]["delta"].get("content") if choices else None
            if text:
                seq += 1
                frame = {"type": "message.delta", "delta": text, "seq": seq}
                await send_text(json.dumps(frame))
    await send_text(DONE)


async def relay(port: int, upstream: str) -> None:
    """Serve websockets on port with the websockets library (--server websockets)."""
    url = completions_url(upstream)
    async with upstream_session() as http:

        async def handler(ws: ServerConnection) -> None:
            async for frame in ws:
                await stream_answer(http, url, json.loads(frame)["content"], ws.send)

        options = {"compression": None, "max_size": None, "ping_interval": None}
        async with serve(handler, "127.0.0.1", port, **options):
            await asyncio.Future()  # until SIGTERM


_http = None  # application's session, created on the first socket in daphne's loop


async def application(scope: dict, receive, send) -> None:
    """The relay as a plain ASGI application (--server daphne); FLOOR_UPSTREAM is the API."""
    global _http
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket" or (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    if _http is None:
        _http = upstream_session()
    url = completions_url(os.environ["FLOOR_UPSTREAM"])

    async def send_text(text: str) -> None:
        await send({"type": "websocket.send", "text": text})

    while (message := await receive())["type"] != "websocket.disconnect":
        if message.get("text") is not None:
            await stream_answer(_http, url, json.loads(message["text"])["content"], send_text)


# --- the client (this process) --------------------------------------------------------------


async def follow(ws: ClientConnection, content: str, timeout: float = 300) -> Stream:
    """Ask for one answer on an open socket and follow it to message.done."""
    stream = Stream(started=time.perf_counter())
    await ws.send(json.dumps({"content": content}))
    next_seq = 1
    async with asyncio.timeout(timeout):
        async for raw in ws:
            now = time.perf_counter()
            event = json.loads(raw)
            if event["type"] == "message.delta":
                stream.seq_gaps += event["seq"] != next_seq
                next_seq = event["seq"] + 1
                stream.add(now, event["delta"])
            elif event["type"] == "message.done":
                stream.finished, stream.error = now, event.get("error")
                stream.status = "complete" if stream.error is None else "error"
                return stream
    stream.error = "the socket closed before message.done"
    return stream


async def open_sockets(url: str, count: int, parallel: int = 50) -> list[ClientConnection]:
    gate = asyncio.Semaphore(parallel)

    async def one() -> ClientConnection:
        async with gate:
            return await connect(
                url, compression=None, max_size=None, ping_interval=None, open_timeout=120
            )

    return await asyncio.gather(*(one() for _ in range(count)))


async def expected_texts(sim_url: str, prompts: list[str]) -> list[str]:
    """The simulator's whole answer to each request the relay sent, not streamed."""
    gate = asyncio.Semaphore(100)
    url = f"{sim_url}/compat/v1/chat/completions"
    headers = {"Authorization": f"Bearer {API_KEY}"}

    async def one(http: httpx.AsyncClient, content: str) -> str:
        async with gate:  # the same request gives the same text: it may go out twice
            response = await twice(
                http.post, url, json=upstream_body(content, False), headers=headers
            )
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]

    async with direct_client() as http:
        return await asyncio.gather(*(one(http, content) for content in prompts))


async def paced(
    relay_service: Service,
    simulator: Service,
    url: str,
    sim_url: str,
    streams: int,
    tokens: int,
    arrivals: float,
) -> dict:
    prompts = chat_pace_prompts(streams, tokens, TPS, TTFT)
    sockets = await open_sockets(url, streams)
    await asyncio.sleep(1)  # the handshakes are not part of the run
    delays = arrival_delays(streams, arrivals)

    async def one(ws: ClientConnection, content: str, delay: float) -> Stream:
        await asyncio.sleep(delay)
        return await follow(ws, content)

    services = {"relay": relay_service, "simulator": simulator}
    before = {name: service.cpu_seconds() for name, service in services.items()}
    waited_before = relay_service.run_queue_seconds()
    client_before, started = own_cpu_seconds(), time.perf_counter()
    try:
        starts = zip(sockets, prompts, delays, strict=True)
        results = await asyncio.gather(*(one(ws, c, d) for ws, c, d in starts))
        usage = {name: service.cpu_seconds() - before[name] for name, service in services.items()}
        usage["client"] = own_cpu_seconds() - client_before
        usage["wall"] = time.perf_counter() - started
        usage["relay_waiting"] = relay_service.run_queue_seconds() - waited_before
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    expected = await expected_texts(sim_url, prompts)
    return figures(results, expected, streams, tokens, arrivals, usage)


def figures(
    results: list[Stream],
    expected: list[str],
    streams: int,
    tokens: int,
    arrivals: float,
    usage: dict,
) -> dict:
    good = [s for s in results if s.ok]
    delivered = sum(len(tokenize(s.text)) for s in results)
    lags = [lag * 1e3 for s in good for lag in s.lags]
    ttfts = [s.ttft * 1e3 for s in good if s.frames]
    per_1000 = {name: usage[name] / max(1, delivered) * 1000 for name in ("relay", "simulator")}
    return {
        "streams": streams,
        "tokens_per_answer": tokens,
        "pace_tps": TPS,
        "pace_ttft_ms": TTFT * 1e3,
        "arrivals_per_second": arrivals,
        "failed": streams - len(good),
        "errors": sorted({s.error for s in results if s.error})[:5],
        "tokens_expected": streams * tokens,
        "tokens_delivered": delivered,
        "all_text_equal": all(s.text == text for s, text in zip(results, expected, strict=True)),
        "frames": sum(len(s.frames) for s in results),
        "tokens_per_frame": delivered / max(1, sum(len(s.frames) for s in results)),
        # Arrival minus the simulator's send stamp, per chunk it sent (one token at chat pace).
        "lag_p50_ms": median(lags),
        "lag_p99_ms": percentile(lags, 99),
        "lag_max_ms": max(lags, default=float("nan")),
        "ttft_p50_ms": median(ttfts),
        "ttft_p99_ms": percentile(ttfts, 99),
        "wall_seconds": usage["wall"],
        "cpu_seconds": {name: usage[name] for name in ("relay", "simulator", "client")},
        "relay_cpu_seconds_per_1000_tokens": per_1000["relay"],
        "simulator_cpu_seconds_per_1000_tokens": per_1000["simulator"],
        "relay_core_share": usage["relay"] / usage["wall"],
        # Seconds the relay was ready to run but had no core: other work on the machine.
        "relay_run_queue_seconds": usage["relay_waiting"],
    }


def measure(streams: int, tokens: int, arrivals: float, pin: bool, server: str) -> dict:
    sim_port = free_port(ports_from_env("BENCH_SIM_PORTS"))
    relay_port = free_port(ports_from_env("BENCH_APP_PORTS"))
    sim_url = f"http://127.0.0.1:{sim_port}"
    with tempfile.TemporaryDirectory(prefix="ltc-floor-") as name:
        directory = Path(name)
        env = service_env(f"sqlite:///{directory / 'unused.sqlite3'}")
        args = [PYTHON, "manage.py", "llama_simulator", "--port", str(sim_port)]
        args += ["--tokens-per-second", f"{TPS:g}", "--first-token-delay", f"{TTFT:g}"]
        args += ["--api-key", API_KEY]
        services = [Service("simulator", args, env, directory, CLIENT_CPUS if pin else None)]
        try:
            if pin:
                os.sched_setaffinity(0, CLIENT_CPUS)
            if server == "daphne":
                args = [PYTHON, "-m", "chatapp.core.server", "-b", "127.0.0.1"]
                args += ["-p", str(relay_port), "bench.floor:application"]
                env = {**env, "FLOOR_UPSTREAM": sim_url}
                env.pop("DJANGO_SETTINGS_MODULE", None)  # no Django in this relay
            else:
                args = [PYTHON, "-m", "bench.floor", "--serve", "--port", str(relay_port)]
                args += ["--upstream", sim_url]
            services.append(Service("relay", args, env, directory, SERVER_CPUS if pin else None))
            simulator, relay_service = services
            simulator.wait_for_port(sim_port)
            relay_service.wait_for_port(relay_port)
            url = f"ws://127.0.0.1:{relay_port}/"
            coroutine = paced(relay_service, simulator, url, sim_url, streams, tokens, arrivals)
            return {"server": server, **run(coroutine)}
        finally:
            for service in reversed(services):
                service.stop()


def print_floor(f: dict) -> None:
    print(
        f"floor chat: {f['streams']} streams of {f['tokens_per_answer']} tokens at"
        f" {f['pace_tps']:g}/s, {f['arrivals_per_second']:g} starting a second, bare relay on"
        f" {f['server']}:"
        f" tokens {f['tokens_delivered']}/{f['tokens_expected']}, text equal"
        f" {f['all_text_equal']}, failed {f['failed']}, first token p50 {f['ttft_p50_ms']:.0f} ms"
        f" p99 {f['ttft_p99_ms']:.0f} ms, lag p50 {f['lag_p50_ms']:.1f} ms p99"
        f" {f['lag_p99_ms']:.1f} ms, relay {f['relay_cpu_seconds_per_1000_tokens']:.3f} CPU s/1k"
        f" tokens ({f['relay_core_share']:.0%} of a core), simulator"
        f" {f['simulator_cpu_seconds_per_1000_tokens']:.3f}, client"
        f" {f['cpu_seconds']['client']:.1f} s, relay waited {f['relay_run_queue_seconds']:.1f} s"
        f" for a core, {f['tokens_per_frame']:.2f} tokens/frame"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 answers of 60 tokens")
    parser.add_argument("--streams", type=int, help="answers (default 200)")
    parser.add_argument("--tokens", type=int, help="tokens each (default 300)")
    parser.add_argument(
        "--arrivals", type=float, default=100, help="new answers a second (default 100)"
    )
    parser.add_argument(
        "--pin", action="store_true", help="relay on core 0; simulator and client on core 1"
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="websockets",
        help="what serves the relay's sockets (default websockets)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        import uvloop

        uvloop.run(relay(args.port, args.upstream))
        return {}
    streams = args.streams or (20 if args.quick else 200)
    tokens = args.tokens or (60 if args.quick else 300)
    result = measure(streams, tokens, args.arrivals, args.pin, args.server)
    print_floor(result)
    name = "floor" if args.server == "websockets" else f"floor-{args.server}"
    document = {"benchmark": "floor", "server": args.server, "pin": args.pin, "chat": result}
    path = write_result(name, document)
    print(f"  -> {path}")
    return result


if __name__ == "__main__":
    main()
