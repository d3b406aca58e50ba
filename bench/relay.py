"""Relay overhead: the same answers straight from the simulator and through the app, side by side.

Each pair streams one answer with a plain httpx client straight from the simulator and the same
request through daphne's websocket (the order alternates). The direct request is byte-for-byte
the body the app sent upstream for that prompt, so both see the same tokens on the same pace.

    python -m bench.relay [--quick] [--safety]

With --safety the bench user's team screens questions and answers with Llama Guard (`block`):
the extra time to first token then holds the moderation call, measured on its own as well
(straight from the simulator), and the gap between tokens shows what output screening adds.
"""

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/relay.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    API_KEY,
    USERNAME,
    Stack,
    StackOptions,
    Stream,
    app_stream,
    direct_client,
    direct_stream,
    manage,
    median,
    percentile,
    run,
    write_result,
)
from llama_simulator.answers import tokenize  # noqa: E402

# One answer at a time is what is measured: no title request beside the next answer.
RELAY_ENV = {"LLAMA_GENERATE_TITLES": "0"}
TARGET_TOTAL_RATIO = 1.02
TARGET_TTFT_EXTRA_MS = 5.0


def question(index: int, tokens: int, tps: float, ttft: float) -> str:
    return (
        f"Relay benchmark question {index}: how much does the relay add?"
        f" [sim:long tokens={tokens}] [sim:pace tps={tps:g} ttft={ttft:g}]"
    )


SCREEN_EVERYTHING = """
from django.contrib.auth import get_user_model
from chatapp.teams.actions import ensure_personal_team
from chatapp.teams.models import TeamPolicy
team = ensure_personal_team(get_user_model().objects.get(username="{username}"))
TeamPolicy.objects.update_or_create(
    team=team, defaults={{"safety_input": "block", "safety_output": "block"}}
)
"""


async def moderation_ms(stack: Stack, http, content: str, calls: int = 20) -> float:
    """The median time of one moderation call straight to the simulator."""
    times = []
    body = {"messages": [{"role": "user", "content": content}]}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for _ in range(calls):
        started = time.perf_counter()
        response = await http.post(f"{stack.sim_url}/v1/moderations", json=body, headers=headers)
        response.raise_for_status()
        times.append((time.perf_counter() - started) * 1e3)
    return median(times)


async def measure(
    stack: Stack, pairs: int, tokens: int, tps: float, ttft: float, safety: bool = False
) -> dict:
    """Stream `pairs` answers both ways; per-pair figures and their medians."""
    contents = [question(i, tokens, tps, ttft) for i in range(pairs)]
    if safety:
        manage(stack.env, "shell", "-v", "0", "-c", SCREEN_EVERYTHING.format(username=USERNAME))
    async with direct_client() as http:
        ws = await stack.open_socket()
        try:
            bodies = await warm_up(stack, http, ws, contents)
            cpu_before, waited_before = stack.app.cpu_seconds(), stack.app.run_queue_seconds()
            compared = []
            for index, (content, body) in enumerate(zip(contents, bodies, strict=True)):
                if index % 2:
                    app = await app_stream(ws, content)
                    direct = await direct_stream(http, stack.sim_url, body)
                else:
                    direct = await direct_stream(http, stack.sim_url, body)
                    app = await app_stream(ws, content)
                compared.append(compare(direct, app))
            app_cpu = stack.app.cpu_seconds() - cpu_before
            waited = stack.app.run_queue_seconds() - waited_before
        finally:
            await ws.close()
    result = summarize(compared, app_cpu, tokens, tps, ttft)
    result["summary"]["daphne_run_queue_seconds"] = waited
    if safety and "ttft_extra_ms" in result["summary"]:
        async with direct_client() as http:
            moderation = await moderation_ms(stack, http, contents[0])
        summary = result["summary"]
        summary["safety"] = "input and output screening, block"
        summary["moderation_ms"] = moderation
        summary["ttft_extra_beyond_moderation_ms"] = summary["ttft_extra_ms"] - moderation
        summary["meets_targets"] = (
            summary["total_ratio"] <= TARGET_TOTAL_RATIO
            and summary["ttft_extra_beyond_moderation_ms"] < TARGET_TTFT_EXTRA_MS
        )
    return result


async def warm_up(stack: Stack, http, ws, contents: list[str]) -> list[dict]:
    """One pass through the app per prompt; returns the bodies the app sent upstream."""
    await stack.forget_upstream_requests(http)
    for content in contents:
        stream = await app_stream(ws, content)
        if not stream.ok:
            raise RuntimeError(f"warm-up answer failed: {stream.error}")
    bodies = await stack.upstream_requests(http)
    if len(bodies) != len(contents):
        raise RuntimeError(f"expected {len(contents)} upstream requests, saw {len(bodies)}")
    await direct_stream(http, stack.sim_url, bodies[0])
    return bodies


def compare(direct: Stream, app: Stream) -> dict:
    figures = {"ok": direct.ok and app.ok, "error": app.error or direct.error}
    if not figures["ok"]:
        return figures
    direct_gaps, app_gaps = direct.token_gaps(), app.token_gaps()
    return {
        **figures,
        "text_equal": app.text == direct.text,
        "tokens": len(tokenize(direct.text)),
        "app_tokens": len(tokenize(app.text)),
        "usage_tokens": (app.usage or {}).get("completion_tokens"),
        "app_frames": len(app.frames),
        "direct_chunks": len(direct.frames),
        "ttft_ms": {"direct": direct.ttft * 1e3, "app": app.ttft * 1e3},
        "total_ms": {"direct": direct.total * 1e3, "app": app.total * 1e3},
        "gap_mean_ms": {"direct": mean_gap(direct) * 1e3, "app": mean_gap(app) * 1e3},
        "gap_p99_ms": {
            "direct": percentile(direct_gaps, 99) * 1e3,
            "app": percentile(app_gaps, 99) * 1e3,
        },
        "app_milestones_ms": {name: t * 1e3 for name, t in app.milestones.items()},
    }


def mean_gap(stream: Stream) -> float:
    times = stream.token_times()
    return (times[-1] - times[0]) / max(1, len(times) - 1)


def ratio(pair: dict, name: str) -> float:
    return pair[name]["app"] / pair[name]["direct"]


def summarize(pairs: list[dict], app_cpu: float, tokens: int, tps: float, ttft: float) -> dict:
    good = [p for p in pairs if p["ok"]]
    app_tokens = sum(p["app_tokens"] for p in good)
    summary = {
        "pairs": len(pairs),
        "failed": len(pairs) - len(good),
        "all_text_equal": bool(good) and all(p["text_equal"] for p in good),
        "all_tokens_delivered": bool(good)
        and all(p["app_tokens"] == p["tokens"] == tokens for p in good),
        "tokens_per_answer": tokens,
        "pace_tps": tps,
        "pace_ttft_ms": ttft * 1e3,
    }
    if not good:
        return {"summary": summary, "pairs": pairs}
    summary.update(
        ttft_direct_ms=median([p["ttft_ms"]["direct"] for p in good]),
        ttft_app_ms=median([p["ttft_ms"]["app"] for p in good]),
        ttft_extra_ms=median([p["ttft_ms"]["app"] - p["ttft_ms"]["direct"] for p in good]),
        ttft_ratio=median([ratio(p, "ttft_ms") for p in good]),
        total_direct_ms=median([p["total_ms"]["direct"] for p in good]),
        total_app_ms=median([p["total_ms"]["app"] for p in good]),
        total_ratio=median([ratio(p, "total_ms") for p in good]),
        total_ratio_worst=max(ratio(p, "total_ms") for p in good),
        gap_mean_ratio=median([ratio(p, "gap_mean_ms") for p in good]),
        gap_p99_direct_ms=median([p["gap_p99_ms"]["direct"] for p in good]),
        gap_p99_app_ms=median([p["gap_p99_ms"]["app"] for p in good]),
        tokens_per_frame=app_tokens / sum(p["app_frames"] for p in good),
        assistant_created_ms=median(
            [p["app_milestones_ms"].get("message.created:assistant", 0.0) for p in good]
        ),
        app_cpu_seconds_per_1000_tokens=app_cpu / app_tokens * 1000,
    )
    summary["meets_targets"] = (
        summary["total_ratio"] <= TARGET_TOTAL_RATIO
        and summary["ttft_extra_ms"] < TARGET_TTFT_EXTRA_MS
    )
    return {"summary": summary, "pairs": pairs}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few short answers")
    parser.add_argument("--pairs", type=int, help="answers streamed each way")
    parser.add_argument("--tokens", type=int, default=600, help="tokens per answer")
    parser.add_argument("--tps", type=float, default=450.0, help="simulator tokens per second")
    parser.add_argument("--ttft", type=float, default=0.01, help="simulator first-token delay")
    parser.add_argument("--database-url", help="postgres://... (default: a fresh SQLite file)")
    parser.add_argument("--redis-url", help="redis://... (default: the in-memory channel layer)")
    parser.add_argument("--name", help="results file name (relay, or relay-safety)")
    parser.add_argument(
        "--safety", action="store_true", help="screen questions and answers with Llama Guard"
    )
    args = parser.parse_args(argv)
    pairs = args.pairs or (4 if args.quick else 20)
    tokens = min(args.tokens, 100) if args.quick else args.tokens
    options = StackOptions(
        tokens_per_second=args.tps,
        first_token_delay=args.ttft,
        database_url=args.database_url,
        redis_url=args.redis_url,
        extra_env=RELAY_ENV,
    )
    with Stack(options) as stack:
        result = run(measure(stack, pairs, tokens, args.tps, args.ttft, args.safety))
    setup = {"database": args.database_url or "sqlite", "channel_layer": args.redis_url or "memory"}
    result = {"benchmark": "relay", "quick": args.quick, "setup": setup, **result}
    path = write_result(args.name or ("relay-safety" if args.safety else "relay"), result)
    print_summary(result["summary"], path)
    return result


def print_summary(summary: dict, path: Path) -> None:
    print(f"relay: {summary['pairs']} answers of {summary['tokens_per_answer']} tokens each way")
    if "total_ratio" in summary:
        print(
            f"  total time app/direct {summary['total_ratio']:.3f}"
            f" (worst {summary['total_ratio_worst']:.3f});"
            f" first token +{summary['ttft_extra_ms']:.1f} ms"
            f" ({summary['ttft_direct_ms']:.1f} -> {summary['ttft_app_ms']:.1f} ms);"
            f" mean gap x{summary['gap_mean_ratio']:.3f};"
            f" {summary['tokens_per_frame']:.1f} tokens/frame"
        )
    if "moderation_ms" in summary:
        print(
            f"  with Llama Guard on both sides: one moderation call {summary['moderation_ms']:.1f}"
            f" ms; first token +{summary['ttft_extra_beyond_moderation_ms']:.1f} ms beyond it"
        )
    print(
        f"  failed {summary['failed']}, text equal {summary['all_text_equal']},"
        f" all tokens {summary['all_tokens_delivered']} -> {path}"
    )


if __name__ == "__main__":
    main()
