"""`make bench`: every benchmark in turn, then the summary table and the plot.

Each benchmark runs in its own process and writes bench/results/<name>.json. A full run
redraws docs/bench/performance.png; a `--quick` run (a smoke test of the harness, its figures
mean little) draws bench/results/performance-quick.png instead.

    python bench/run_all.py [--quick] [--only relay,concurrency,database]
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/run_all.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import plot  # noqa: E402
from bench.harness import PYTHON, RESULTS_DIR, ROOT  # noqa: E402
from bench.summary import write_summary  # noqa: E402

BENCHMARKS = ("relay", "concurrency", "database")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--only", help="comma-separated: " + ",".join(BENCHMARKS))
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(BENCHMARKS)
    warn_if_busy()
    failed = []
    for name in chosen:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        command = [PYTHON, "-m", f"bench.{name}"] + (["--quick"] if args.quick else [])
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
