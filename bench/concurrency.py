"""Many answers at once through one daphne process.

fast: 50 simultaneous answers at about 450 tokens/s, through the app and straight from the
      simulator in alternate rounds; the figure is the ratio of the median total times.
chat: 50, 200 and 500 simultaneous answers at a chat pace (30 tokens/s, 20 s long), started
      at 50 new answers a second so that all of them stream at once: every token delivered, the
      gap between tokens against the simulator's pace (over the whole run, and while every
      answer streams), time to first token, daphne's CPU per 1,000 tokens and its memory per
      open socket, with the simulator's and the load generator's own CPU beside it. Each level
      gets a fresh stack.

    python -m bench.concurrency [--quick] [--only fast|chat]
"""

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as `python bench/concurrency.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    API_KEY,
    MODEL,
    Service,
    Stack,
    StackOptions,
    Stream,
    app_stream,
    arrival_delays,
    chat_pace_prompts,
    direct_client,
    direct_stream,
    median,
    own_cpu_seconds,
    percentile,
    run,
    twice,
    write_result,
)
from chatapp.llm.limits import message_text  # noqa: E402
from llama_simulator.answers import tokenize  # noqa: E402

TARGET_FAST_RATIO = 1.3
TARGET_GAP_P99 = 2.0
MIB = 2**20
STARTS_PER_SECOND = 50  # how fast new answers arrive at the chat-pace levels (--arrivals)
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"  # BENCH_REDIS_URL, for --processes


async def open_sockets(stack: Stack, count: int, parallel: int = 50) -> list:
    gate = asyncio.Semaphore(parallel)

    async def one(user: int):
        async with gate:
            return await stack.open_socket(user)

    return await asyncio.gather(*(one(i) for i in range(count)))


async def close_sockets(sockets: list) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def bodies_by_content(bodies: list[dict], contents: list[str]) -> list[dict]:
    """The upstream request the app sent for each prompt, matched on the user's text."""
    sent = {message_text(body["messages"][-1]): body for body in bodies}
    missing = [c for c in contents if c not in sent]
    if missing:
        raise RuntimeError(f"{len(missing)} prompts never reached the simulator")
    return [sent[c] for c in contents]


async def expected_texts(http, sim_url: str, bodies: list[dict]) -> list[str]:
    """The whole answer the simulator gives for each body (non-streaming, same request)."""
    gate = asyncio.Semaphore(100)
    headers = {"Authorization": f"Bearer {API_KEY}"}

    async def one(body: dict) -> str:
        url, request = f"{sim_url}/v1/chat/completions", {**body, "stream": False}
        async with gate:  # the same request gives the same text: it may go out twice
            response = await twice(http.post, url, json=request, headers=headers)
        response.raise_for_status()
        return response.json()["completion_message"]["content"]["text"]

    return await asyncio.gather(*(one(body) for body in bodies))


# --- fast: 50 answers at ~450 tokens/s, app against direct -----------------------------------


async def fast(stack: Stack, streams: int, tokens: int, tps: float, rounds: int) -> dict:
    contents = [
        f"Fast stream {i}. [sim:long tokens={tokens}] [sim:pace tps={tps:g} ttft=0.01]"
        for i in range(streams)
    ]
    async with direct_client() as http:
        sockets = await open_sockets(stack, streams)
        try:
            await stack.forget_upstream_requests(http)
            await app_batch(sockets, contents)  # warm-up; also records the upstream bodies
            bodies = bodies_by_content(await stack.upstream_requests(http), contents)
            await direct_batch(http, stack, bodies)
            measured = {"app": [], "direct": [], "app_cpu": 0.0, "app_waiting": 0.0}
            measured["client_cpu"] = {}
            for index in range(rounds):
                order = ("direct", "app") if index % 2 == 0 else ("app", "direct")
                for side in order:
                    await fast_round(stack, http, sockets, contents, bodies, side, measured)
        finally:
            await close_sockets(sockets)
    return fast_figures(measured, tokens, tps)


async def fast_round(stack, http, sockets, contents, bodies, side: str, measured: dict) -> None:
    cpu_before, client_before = stack.app.cpu_seconds(), own_cpu_seconds()
    if side == "app":
        waited_before = stack.app.run_queue_seconds()
        results = await app_batch(sockets, contents)
        measured["app_cpu"] += stack.app.cpu_seconds() - cpu_before
        measured["app_waiting"] += stack.app.run_queue_seconds() - waited_before
    else:
        results = await direct_batch(http, stack, bodies)
    spent = own_cpu_seconds() - client_before
    measured["client_cpu"][side] = measured["client_cpu"].get(side, 0.0) + spent
    measured[side].append(results)


async def app_batch(sockets: list, contents: list[str]) -> list[Stream]:
    pairs = zip(sockets, contents, strict=True)
    return await asyncio.gather(*(app_stream(ws, content) for ws, content in pairs))


async def direct_batch(http, stack: Stack, bodies: list[dict]) -> list[Stream]:
    return await asyncio.gather(*(direct_stream(http, stack.sim_url, b) for b in bodies))


def fast_figures(measured: dict, tokens: int, tps: float) -> dict:
    app = [s for batch in measured["app"] for s in batch]
    direct = [s for batch in measured["direct"] for s in batch]
    good_app = [s for s in app if s.ok]
    good_direct = [s for s in direct if s.ok]
    # Stream i of every app round answers the same body as stream i of every direct round.
    references = [s.text for s in measured["direct"][0]]
    texts_equal = all(
        s.text == references[i] for batch in measured["app"] for i, s in enumerate(batch)
    )
    app_totals = [s.total * 1e3 for s in good_app]
    direct_totals = [s.total * 1e3 for s in good_direct]
    app_tokens = sum(len(tokenize(s.text)) for s in good_app)
    figures = {
        "streams": len(measured["app"][0]),
        "rounds": len(measured["app"]),
        "tokens_per_answer": tokens,
        "pace_tps": tps,
        "failed": len(app) - len(good_app) + len(direct) - len(good_direct),
        "all_text_equal": texts_equal,
        "all_tokens_delivered": all(len(tokenize(s.text)) == tokens for s in app),
        "total_p50_direct_ms": median(direct_totals),
        "total_p50_app_ms": median(app_totals),
        "total_p99_direct_ms": percentile(direct_totals, 99),
        "total_p99_app_ms": percentile(app_totals, 99),
        "ttft_p50_direct_ms": median([s.ttft * 1e3 for s in good_direct]),
        "ttft_p50_app_ms": median([s.ttft * 1e3 for s in good_app]),
        "tokens_per_frame": app_tokens / max(1, sum(len(s.frames) for s in good_app)),
        "app_cpu_seconds_per_1000_tokens": measured["app_cpu"] / max(1, app_tokens) * 1000,
        "client_cpu_seconds": measured["client_cpu"],
        "daphne_run_queue_seconds": measured["app_waiting"],
    }
    figures["total_p50_ratio"] = figures["total_p50_app_ms"] / figures["total_p50_direct_ms"]
    figures["total_p99_ratio"] = figures["total_p99_app_ms"] / figures["total_p99_direct_ms"]
    figures["meets_target"] = figures["total_p50_ratio"] < TARGET_FAST_RATIO
    return figures


# --- chat pace: 50 / 200 / 500 answers at 30 tokens/s -----------------------------------------


async def chat_level(
    stack: Stack, streams: int, tokens: int, tps: float, ttft: float, arrivals: float
) -> dict:
    contents = chat_pace_prompts(streams, tokens, tps, ttft)
    async with direct_client() as http:
        rss_before = stack.app.rss_bytes()
        sockets = await open_sockets(stack, streams)
        try:
            await asyncio.sleep(1)  # let the handshakes' garbage settle before reading memory
            rss_open = stack.app.rss_bytes()
            await stack.forget_upstream_requests(http)
            controls = control_bodies(max(5, streams // 10), tokens, tps, ttft)
            results, usage = await paced_batch(stack, http, sockets, contents, controls, arrivals)
        finally:
            await close_sockets(sockets)
        bodies = bodies_by_content(await stack.upstream_requests(http), contents)
        try:
            expected = await expected_texts(http, stack.sim_url, bodies)
        except httpx.HTTPError:
            print(stack.simulator.log_tail(40))
            raise
    memory = {"before": rss_before, "open": rss_open, "peak": usage.pop("rss_peak")}
    control = usage.pop("control")
    figures = chat_figures(results, expected, streams, tokens, tps, ttft, usage, memory)
    control_gaps = [g * 1e3 for s in control if s.ok for g in s.token_gaps()]
    figures["arrivals_per_second"] = arrivals
    figures["users"] = stack.options.users
    figures["control_streams"] = len(control)
    control_lags = [lag * 1e3 for s in control if s.ok for lag in s.lags]
    figures["control_lag_p99_ms"] = percentile(control_lags, 99)
    figures["control_gap_p99_vs_pace"] = percentile(control_gaps, 99) * tps / 1000
    return figures


def control_bodies(count: int, tokens: int, tps: float, ttft: float) -> list[dict]:
    """Streams straight from the simulator during the run: what the machine alone allows."""
    return [
        {
            "model": MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": f"Control stream {i}. [sim:long tokens={tokens}]"
                    f" [sim:pace tps={tps:g} ttft={ttft:g}] [sim:stamp]",
                }
            ],
        }
        for i in range(count)
    ]


async def paced_batch(
    stack: Stack, http, sockets: list, contents: list[str], controls: list[dict], arrivals: float
) -> tuple[list, dict]:
    """Start the answers, `arrivals` a second, with a few direct control streams among them."""
    services = {"daphne": stack.app, "simulator": stack.simulator}
    before = {name: service.cpu_seconds() for name, service in services.items()}
    waited_before = stack.app.run_queue_seconds()
    client_before, started = own_cpu_seconds(), time.perf_counter()
    sampler = asyncio.create_task(peak_rss(stack.app))
    spread = len(sockets) / arrivals
    delays = arrival_delays(len(sockets), arrivals)

    async def one(ws, content: str, delay: float) -> Stream:
        await asyncio.sleep(delay)
        return await app_stream(ws, content)

    async def control(body: dict, delay: float) -> Stream:
        await asyncio.sleep(delay)
        return await direct_stream(http, stack.sim_url, body)

    try:
        starts = zip(sockets, contents, delays, strict=True)
        answers = asyncio.gather(*(one(ws, content, delay) for ws, content, delay in starts))
        control_delays = [i * spread / len(controls) for i in range(len(controls))]
        paired = zip(controls, control_delays, strict=True)
        direct = asyncio.gather(*(control(body, delay) for body, delay in paired))
        results, control_streams = await asyncio.gather(answers, direct)
    finally:
        sampler.cancel()
    usage = {name: service.cpu_seconds() - before[name] for name, service in services.items()}
    usage["client"] = own_cpu_seconds() - client_before
    usage["daphne_waiting"] = stack.app.run_queue_seconds() - waited_before
    usage["wall"] = time.perf_counter() - started
    usage["rss_peak"] = await sampler_peak(sampler)
    usage["control"] = control_streams
    return results, usage


async def peak_rss(service: Service) -> int:
    peak = 0
    try:
        while True:
            peak = max(peak, service.rss_bytes())
            await asyncio.sleep(0.25)
    except asyncio.CancelledError:
        return peak


async def sampler_peak(sampler: asyncio.Task) -> int:
    try:
        return await sampler
    except asyncio.CancelledError:
        return 0


def chat_figures(
    results: list[Stream],
    expected: list[str],
    streams: int,
    tokens: int,
    tps: float,
    ttft: float,
    cpu: dict,
    memory: dict,
) -> dict:
    pace_ms = 1000 / tps
    good = [s for s in results if s.ok]
    gaps = [g * 1e3 for s in good for g in s.token_gaps()]
    steady = steady_gaps(good)
    delivered = sum(len(tokenize(s.text)) for s in results)
    ttfts = [s.ttft * 1e3 for s in good]
    lags = [lag * 1e3 for s in good for lag in s.lags]
    figures = {
        "streams": streams,
        "tokens_per_answer": tokens,
        "pace_tps": tps,
        "pace_ttft_ms": ttft * 1e3,
        "failed": streams - len(good),
        "errors": sorted({s.error for s in results if s.error})[:5],
        "tokens_expected": streams * tokens,
        "tokens_delivered": delivered,
        "all_text_equal": all(s.text == text for s, text in zip(results, expected, strict=True)),
        "gap_p50_ms": median(gaps),
        "gap_p99_ms": percentile(gaps, 99),
        "gap_max_ms": max(gaps, default=float("nan")),
        "steady_gap_p99_ms": percentile(steady, 99) if steady else None,
        "steady_tokens": len(steady),
        # Arrival minus the simulator's send stamp, per chunk it sent (one token at chat pace).
        "lag_p50_ms": median(lags),
        "lag_p99_ms": percentile(lags, 99),
        "lag_max_ms": max(lags, default=float("nan")),
        "ttft_p50_ms": median(ttfts),
        "ttft_p99_ms": percentile(ttfts, 99),
        "tokens_per_frame": delivered / max(1, sum(len(s.frames) for s in results)),
        "wall_seconds": cpu["wall"],
        "cpu_seconds": {name: cpu[name] for name in ("daphne", "simulator", "client")},
        "daphne_cpu_seconds_per_1000_tokens": cpu["daphne"] / max(1, delivered) * 1000,
        "simulator_cpu_seconds_per_1000_tokens": cpu["simulator"] / max(1, delivered) * 1000,
        "daphne_core_share": cpu["daphne"] / cpu["wall"],
        # Seconds daphne's threads were ready to run but had no core: other work on the machine.
        "daphne_run_queue_seconds": cpu["daphne_waiting"],
        "rss_mib": {name: value / MIB for name, value in memory.items()},
        "kib_per_open_socket": (memory["open"] - memory["before"]) / streams / 1024,
        "kib_per_streaming_socket": (memory["peak"] - memory["before"]) / streams / 1024,
    }
    figures["gap_p50_vs_pace"] = figures["gap_p50_ms"] / pace_ms
    figures["gap_p99_vs_pace"] = figures["gap_p99_ms"] / pace_ms
    steady_p99 = figures["steady_gap_p99_ms"]  # None: the first answers ended before the last began
    figures["steady_gap_p99_vs_pace"] = steady_p99 / pace_ms if steady_p99 else None
    figures["all_tokens_delivered"] = (
        figures["tokens_delivered"] == figures["tokens_expected"] and figures["all_text_equal"]
    )
    figures["meets_target"] = (
        figures["all_tokens_delivered"] and figures["gap_p99_vs_pace"] < TARGET_GAP_P99
    )
    return figures


def steady_gaps(streams: list[Stream]) -> list[float]:
    """Gaps (ms) of tokens that arrived while every answer was streaming."""
    if not streams:
        return []
    times = [s.token_times() for s in streams]
    opened = max(t[0] for t in times if t)
    closed = min(t[-1] for t in times if t)
    return [
        (later - earlier) * 1e3
        for t in times
        for earlier, later in zip(t, t[1:], strict=False)
        if opened <= later <= closed
    ]


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


# --- entry point ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, short answers")
    parser.add_argument("--only", choices=("fast", "chat"))
    parser.add_argument("--levels", help="comma-separated stream counts at chat pace")
    parser.add_argument(
        "--pin", action="store_true", help="server on core 0; simulator and client on core 1"
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="server processes (more than 1 needs Redis)"
    )
    parser.add_argument(
        "--profile", help="run the one server process under cProfile into this file"
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the one server process's event loop (asyncio: plain daphne, for comparison)",
    )
    parser.add_argument("--tokens", type=int, help="tokens per chat-pace answer (default 600)")
    parser.add_argument(
        "--arrivals",
        type=float,
        default=STARTS_PER_SECOND,
        help=f"new chat-pace answers a second (default {STARTS_PER_SECOND})",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=1,
        help="people of one team the chat-pace sockets belong to, in turn (default 1)",
    )
    parser.add_argument(
        "--database-url",
        help="the servers' database, emptied first (default: a fresh SQLite file); the image"
        " and compose run several processes on PostgreSQL",
    )
    args = parser.parse_args(argv)
    result: dict = {"benchmark": "concurrency", "quick": args.quick, "loop": args.loop}
    if args.only in (None, "fast"):
        result["fast"] = run_fast(args.quick)
        print_fast(result["fast"])
    if args.only in (None, "chat"):
        default_levels = "10" if args.quick else "50,200,500"
        levels = [int(n) for n in (args.levels or default_levels).split(",")]
        options = {"pin": args.pin, "processes": args.processes, "profile": args.profile}
        options["loop"] = args.loop
        options["users"] = args.users
        options["database_url"] = args.database_url
        if args.processes > 1:
            options["redis_url"] = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
        result["chat"] = [
            run_chat_level(n, args.quick, options, args.tokens, args.arrivals) for n in levels
        ]
    path = write_result("concurrency", result)
    print(f"  -> {path}")
    return result


def run_fast(quick: bool) -> dict:
    streams, tokens, rounds = (10, 100, 2) if quick else (50, 600, 4)
    with Stack(StackOptions(tokens_per_second=450, first_token_delay=0.01)) as stack:
        return run(fast(stack, streams, tokens, 450.0, rounds))


def run_chat_level(
    streams: int,
    quick: bool,
    options: dict | None = None,
    tokens: int | None = None,
    arrivals: float = STARTS_PER_SECOND,
) -> dict:
    tokens, tps, ttft = tokens or (45 if quick else 600), 30.0, 0.3
    stack_options = StackOptions(tokens_per_second=tps, first_token_delay=ttft, **(options or {}))
    with Stack(stack_options) as stack:
        figures = run(chat_level(stack, streams, tokens, tps, ttft, arrivals))
    print_chat(figures)
    return figures


def print_fast(f: dict) -> None:
    print(
        f"concurrency fast: {f['streams']} streams x {f['tokens_per_answer']} tokens at"
        f" {f['pace_tps']:g}/s: p50 total app/direct {f['total_p50_ratio']:.3f}"
        f" ({f['total_p50_direct_ms']:.0f} -> {f['total_p50_app_ms']:.0f} ms),"
        f" p99 {f['total_p99_ratio']:.3f}, {f['tokens_per_frame']:.1f} tokens/frame,"
        f" failed {f['failed']}, text equal {f['all_text_equal']}"
    )


def print_chat(f: dict) -> None:
    print(
        f"concurrency chat: {f['streams']} streams of {f['tokens_per_answer']} tokens at"
        f" {f['pace_tps']:g}/s, {f['arrivals_per_second']:g} starting a second,"
        f" {f.get('users', 1)} user{'s' if f.get('users', 1) != 1 else ''}:"
        f" tokens {f['tokens_delivered']}/{f['tokens_expected']}, text equal"
        f" {f['all_text_equal']}, gap p50 x{f['gap_p50_vs_pace']:.2f} p99"
        f" x{f['gap_p99_vs_pace']:.2f} of pace (x{fmt(f['steady_gap_p99_vs_pace'])} while all"
        f" stream; direct control x{f['control_gap_p99_vs_pace']:.2f}), first token p50"
        f" {f['ttft_p50_ms']:.0f} ms p99 {f['ttft_p99_ms']:.0f} ms, lag p50"
        f" {f['lag_p50_ms']:.1f} ms p99 {f['lag_p99_ms']:.1f} ms (direct control p99"
        f" {f['control_lag_p99_ms']:.1f} ms), daphne"
        f" {f['daphne_cpu_seconds_per_1000_tokens']:.3f} CPU s/1k tokens"
        f" ({f['daphne_core_share']:.0%} of a core), simulator"
        f" {f['simulator_cpu_seconds_per_1000_tokens']:.3f}, client"
        f" {f['cpu_seconds']['client']:.1f} s, daphne waited"
        f" {f['daphne_run_queue_seconds']:.1f} s for a core,"
        f" {f['kib_per_open_socket']:.0f} KiB/socket"
        f" open, {f['kib_per_streaming_socket']:.0f} KiB streaming"
    )


if __name__ == "__main__":
    main()
