"""The results as markdown tables (bench/results/summary.md), in the shape bench/README.md shows."""

import json
from pathlib import Path

from bench.harness import RESULTS_DIR


def load(name: str) -> dict:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def fmt(value, pattern: str = "{:.3f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def relay_rows(relay: dict, concurrency: dict, redis: dict) -> list[str]:
    s = relay.get("summary", {})
    r = redis.get("summary", {})
    fast = concurrency.get("fast", {})
    tokens, pace = s.get("tokens_per_answer", "?"), s.get("pace_tps", 450)
    answer = f"{tokens}-token answer at {pace:g} tokens/s"
    return [
        "| figure | measured | target | peer |",
        "|---|---|---|---|",
        f"| total time, app / direct ({answer}, median of {s.get('pairs', '?')}) |"
        f" {fmt(s.get('total_ratio'))} | ≤ 1.02 | ~1.05 |",
        f"| extra time to first token | {fmt(s.get('ttft_extra_ms'), '+{:.1f} ms')}"
        f" ({fmt(s.get('ttft_direct_ms'), '{:.1f}')} → {fmt(s.get('ttft_app_ms'), '{:.1f}')} ms)"
        " | < 5 ms | +20–25 ms |",
        f"| mean gap between tokens, app / direct | {fmt(s.get('gap_mean_ratio'))} | | |",
        f"| the same through the Redis channel layer: total time / extra first token |"
        f" {fmt(r.get('total_ratio'))} / {fmt(r.get('ttft_extra_ms'), '+{:.1f} ms')} | | |",
        f"| tokens per websocket frame | {fmt(s.get('tokens_per_frame'), '{:.1f}')} | | |",
        f"| 50 simultaneous fast answers: p50 total time, app / direct |"
        f" {fmt(fast.get('total_p50_ratio'))} | < 1.3 | 2.1 |",
    ]


def chat_rows(concurrency: dict) -> list[str]:
    rows = [
        "| streams at 30 tokens/s | tokens delivered | gap p50 / pace | gap p99 / pace"
        " (while all stream) | direct control: gap p99 / pace | first token p50 / p99"
        " | daphne CPU s per 1k tokens (share of a core) | simulator CPU s per 1k tokens"
        " | memory per open socket |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in concurrency.get("chat", []):
        rows.append(
            f"| {lv['streams']} | {lv['tokens_delivered']:,} / {lv['tokens_expected']:,}"
            f"{'' if lv['all_text_equal'] else ' (text differs)'}"
            f" | {lv['gap_p50_vs_pace']:.2f} | {lv['gap_p99_vs_pace']:.2f}"
            f" ({fmt(lv['steady_gap_p99_vs_pace'], '{:.2f}')})"
            f" | {fmt(lv.get('control_gap_p99_vs_pace'), '{:.2f}')}"
            f" | {lv['ttft_p50_ms'] / 1e3:.2f} / {lv['ttft_p99_ms'] / 1e3:.2f} s"
            f" | {lv['daphne_cpu_seconds_per_1000_tokens']:.3f} ({lv['daphne_core_share']:.0%})"
            f" | {lv['simulator_cpu_seconds_per_1000_tokens']:.3f}"
            f" | {lv['kib_per_open_socket']:.0f} KiB |"
        )
    return rows


def writes_rows(database: dict) -> list[str]:
    rows = [
        "| backend | answer | tokens | seconds | write statements | by table |",
        "|---|---|---|---|---|---|",
    ]
    for backend, answers in database.get("writes", {}).items():
        for a in answers:
            tables = ", ".join(f"{k} {v}" for k, v in sorted(a["writes_by_table"].items()))
            rows.append(
                f"| {backend} | {a['answer']} | {a['tokens']} | {a['seconds']:.1f}"
                f" | {a['writes']} | {tables} |"
            )
    return rows


def reads_rows(database: dict) -> list[str]:
    rows = [
        "| backend | request | server time (median) | queries (10,000 conv. / 10 conv.) | size |",
        "|---|---|---|---|---|",
    ]
    for backend, endpoints in database.get("reads", {}).items():
        for name, f in endpoints.items():
            large, small = f["large"], f["small"]
            status = "" if large["status"] == 200 else f" (HTTP {large['status']})"
            rows.append(
                f"| {backend} | {name} `{f['path']}`{status} | {large['ms_median']:.1f} ms"
                f" | {large['queries']} / {small['queries']} | {large['bytes'] / 1024:.0f} KiB |"
            )
    return rows


def search_rows(search: dict) -> list[str]:
    rows = [
        "| backend | messages | search p50 / p95 (target < 100 ms) | worst cases | load / index |",
        "|---|---|---|---|---|",
    ]
    for backend, f in search.get("backends", {}).items():
        s, seed = f["summary"], f["seed"]
        worst = ", ".join(f"{label}: {ms:.0f} ms" for label, ms in s["worst_ms"].items())
        rows.append(
            f"| {backend} | {seed['messages']:,} | {s['p50_ms']:.1f} / {s['p95_ms']:.1f} ms"
            f" | {worst} | {seed['load_seconds']:.0f} / {seed['index_seconds']:.0f} s |"
        )
    return rows


def client_rows(client: dict) -> list[str]:
    rows = [
        "| pace | protocol | reader | tokens per event | events per second"
        " | events per CPU second | CPU ms per 1,000 tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in client.get("rows", []):
        pace = f"{r['pace_tps']:g} tokens/s" if r["pace_tps"] else "none"
        rows.append(
            f"| {pace} | {r['protocol']} | {r['reader']} | {r['tokens_per_event']:.1f}"
            f" | {r['events_per_second']:,.0f}"
            f" | {r['events_per_cpu_second']:,.0f} | {r['cpu_seconds_per_1000_tokens'] * 1e3:.1f} |"
        )
    return rows


def floor_rows(floor: dict) -> list[str]:
    """The bare relay (bench/floor.py): the least a Python relay costs per token here."""
    f = floor.get("chat")
    if not f:
        return []
    return [
        "| bare relay, streams at 30 tokens/s | tokens delivered | lag p50 / p99"
        " | first token p50 / p99 | relay CPU s per 1k tokens (share of a core) |",
        "|---|---|---|---|---|",
        f"| {f['streams']} on {floor.get('server', 'websockets')}"
        f" | {f['tokens_delivered']:,} / {f['tokens_expected']:,}"
        f" | {f['lag_p50_ms']:.1f} / {f['lag_p99_ms']:.1f} ms"
        f" | {f['ttft_p50_ms']:.0f} / {f['ttft_p99_ms']:.0f} ms"
        f" | {f['relay_cpu_seconds_per_1000_tokens']:.3f} ({f['relay_core_share']:.0%}) |",
    ]


def write_summary(path: Path) -> Path:
    relay, concurrency, database = load("relay"), load("concurrency"), load("database")
    sections = [
        relay_rows(relay, concurrency, load("relay-redis")),
        chat_rows(concurrency),
        floor_rows(load("floor")),
        writes_rows(database),
        reads_rows(database),
        search_rows(load("search")),
        client_rows(load("client")),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join("\n".join(rows) for rows in sections if rows) + "\n")
    return path
