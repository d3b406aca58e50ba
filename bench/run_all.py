"""`make bench`: every benchmark in turn, then the summary table and the plot.

Each benchmark runs in its own process and writes bench/results/<name>.json. A full run
redraws docs/bench/performance.png; a `--quick` run (a smoke test of the harness, its figures
mean little) draws bench/results/performance-quick.png instead.

    python bench/run_all.py [--quick]
        [--only relay,relay-redis,concurrency,floor,database,search,client]
"""

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as `python bench/run_all.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import plot  # noqa: E402
from bench.harness import PYTHON, RESULTS_DIR, ROOT  # noqa: E402
from bench.summary import write_summary  # noqa: E402

BENCHMARKS = ("relay", "relay-redis", "concurrency", "floor", "database", "search", "client")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--only", help="comma-separated: " + ",".join(BENCHMARKS))
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(BENCHMARKS)
    warn_if_busy()
    failed = []
    for name in chosen:
        command = benchmark_command(name, args.quick)
        if command is None:
            continue
        started = time.monotonic()
        print(f"== {name}", flush=True)
        if subprocess.run(command, cwd=ROOT).returncode:
            failed.append(name)
        print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)
    summary = write_summary(RESULTS_DIR / "summary.md")
    print(summary.read_text())
    out = RESULTS_DIR / "performance-quick.png" if args.quick else plot.DEFAULT_OUT
    plot.main(["--out", str(out)])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def benchmark_command(name: str, quick: bool) -> list[str] | None:
    flags = ["--quick"] if quick else []
    if name == "floor":  # pinned, as the chat-pace level it is put beside
        return [PYTHON, "-m", "bench.floor", "--pin", *flags]
    if name != "relay-redis":
        return [PYTHON, "-m", f"bench.{name}", *flags]
    # The relay again through the Redis channel layer, as several processes would share it.
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    if not redis_reachable(redis_url):
        print(f"== relay-redis: no Redis at {redis_url}, skipped", flush=True)
        return None
    pairs = [] if quick else ["--pairs", "10"]
    return [PYTHON, "-m", "bench.relay", "--redis-url", redis_url, "--name", name, *pairs, *flags]


def redis_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 2).close()
    except OSError:
        return False
    return True


def warn_if_busy() -> None:
    """Wall-clock figures need the cores to themselves: say so when something else runs."""
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    if load > cores / 2:
        print(
            f"warning: load average {load:.1f} on {cores} cores before starting; other work on"
            " the machine inflates the times (CPU seconds per token are less affected)",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
