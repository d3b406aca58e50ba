"""The benchmark figure: four panels drawn from the JSON results in bench/results/.

python -m bench.plot [--out docs/bench/performance.png]
"""

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/plot.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # no display: write files only
import matplotlib.pyplot as plt  # noqa: E402

from bench.harness import RESULTS_DIR, ROOT  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "bench" / "performance.png"
APP, DIRECT, TARGET = "#3867d6", "#a5b1c2", "#eb3b5a"


def load(name: str) -> dict:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def relay_panel(ax, relay: dict, redis: dict, concurrency: dict) -> None:
    summary = relay.get("summary", {})
    fast = concurrency.get("fast", {})
    bars = [
        ("total time\n(one answer)", summary.get("total_ratio"), 1.02),
        ("token gap\n(one answer)", summary.get("gap_mean_ratio"), None),
        ("total time\n(via Redis)", redis.get("summary", {}).get("total_ratio"), None),
        (f"total p50\n({fast.get('streams', '?')} at once)", fast.get("total_p50_ratio"), 1.3),
    ]
    bars = [(label, value, target) for label, value, target in bars if value is not None]
    positions = range(len(bars))
    ax.bar(positions, [value for _, value, _ in bars], color=APP, width=0.6)
    for x, (_, value, target) in zip(positions, bars, strict=True):
        ax.annotate(f"{value:.3f}", (x, value), ha="center", va="bottom", fontsize=8)
        if target:
            ax.hlines(target, x - 0.35, x + 0.35, colors=TARGET, linestyles="--")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(list(positions), [label for label, _, _ in bars], fontsize=8)
    ax.set_ylabel("app / direct")
    extra = summary.get("ttft_extra_ms")
    note = f", first token +{extra:.1f} ms" if extra is not None else ""
    ax.set_title(f"Relay overhead at ~450 tokens/s{note}", fontsize=10)
    top = max([value for _, value, _ in bars] + [1.3], default=1.3)
    ax.set_ylim(0, top * 1.15)


def gap_panel(ax, concurrency: dict) -> None:
    levels = concurrency.get("chat", [])
    x = range(len(levels))
    ax.plot(x, [lv["gap_p50_vs_pace"] for lv in levels], "o-", color=DIRECT, label="p50")
    ax.plot(x, [lv["gap_p99_vs_pace"] for lv in levels], "o-", color=APP, label="p99")
    controls = [lv.get("control_gap_p99_vs_pace") for lv in levels]
    ax.plot(x, controls, "s--", color=DIRECT, label="p99 straight from the simulator")
    ax.axhline(2.0, color=TARGET, linestyle="--", label="target p99")
    ax.set_xlabel("simultaneous streams (30 tokens/s each)")
    ax.set_ylabel("gap between tokens / pace")
    ax.set_xticks(list(x), [str(level["streams"]) for level in levels])
    ax.set_ylim(0, max([2.5] + [lv["gap_p99_vs_pace"] * 1.1 for lv in levels]))
    ax.legend(fontsize=8)
    ax.set_title("Gap between tokens at chat pace", fontsize=10)


def cpu_panel(ax, concurrency: dict) -> None:
    levels = concurrency.get("chat", [])
    labels = [str(level["streams"]) for level in levels]
    x = range(len(levels))
    daphne = [lv["daphne_cpu_seconds_per_1000_tokens"] for lv in levels]
    sim = [lv["simulator_cpu_seconds_per_1000_tokens"] for lv in levels]
    ax.bar([i - 0.2 for i in x], daphne, width=0.4, color=APP, label="daphne (the app)")
    ax.bar([i + 0.2 for i in x], sim, width=0.4, color=DIRECT, label="simulator")
    for i, level in zip(x, levels, strict=True):
        ax.annotate(
            f"{level['kib_per_open_socket']:.0f} KiB/socket",
            (i - 0.2, daphne[i]),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(list(x), labels)
    ax.set_xlabel("simultaneous streams")
    ax.set_ylabel("CPU seconds per 1,000 tokens")
    ax.legend(fontsize=8)
    ax.set_title("CPU cost per token, memory per socket", fontsize=10)


def reads_panel(ax, database: dict) -> None:
    reads = database.get("reads", {})
    backends = list(reads)
    names = list(next(iter(reads.values()), {}))
    width = 0.8 / max(1, len(backends))
    for b, backend in enumerate(backends):
        values = [reads[backend][n]["large"]["ms_median"] for n in names]
        xs = [i + (b - (len(backends) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, values, width=width, label=backend, color=(APP, DIRECT)[b % 2])
        for x, name in zip(xs, names, strict=True):
            queries = reads[backend][name]["large"]["queries"]
            ax.annotate(f"{queries}q", (x, values[names.index(name)]), ha="center", fontsize=7)
    ax.axhline(100, color=TARGET, linestyle="--", label="target")
    ax.set_xticks(range(len(names)), [n.replace(" ", "\n") for n in names], fontsize=8)
    ax.set_ylabel("server time, ms (median)")
    ax.legend(fontsize=8)
    ax.set_title("10,000 conversations, 5,000 messages", fontsize=10)


def draw(out: Path) -> Path:
    relay, concurrency, database = load("relay"), load("concurrency"), load("database")
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    relay_panel(axes[0][0], relay, load("relay-redis"), concurrency)
    gap_panel(axes[0][1], concurrency)
    cpu_panel(axes[1][0], concurrency)
    reads_panel(axes[1][1], database)
    cpus = (relay or concurrency or database).get("machine", {}).get("cpus", "?")
    fig.suptitle(f"Llama team chat: one daphne process, {cpus} cores, simulator upstream")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    path = draw(args.out)
    print(f"plot -> {path}")
    return path


if __name__ == "__main__":
    main()
