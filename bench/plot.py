"""The benchmark's plot: the latency distribution, and latency and throughput against concurrency.

Drawn with matplotlib (the bench dependency group), imported only when a plot is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.sides import BASELINE, OURS, SEQUENTIAL

COLOURS = {BASELINE: "#b54708", SEQUENTIAL: "#7a5af8", OURS: "#175cd3"}
LABELS = {BASELINE: "baseline: seed-style", SEQUENTIAL: "ours, sequential mode", OURS: "ours: parallel"}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cdf, lat, rate) = plt.subplots(1, 3, figsize=(15, 4.4))
    for name in (BASELINE, SEQUENTIAL, OURS):
        samples = sorted(results["latency_ms"][name]["samples_ms"])
        fraction = [(i + 1) / len(samples) for i in range(len(samples))]
        cdf.step(samples, fraction, where="post", color=COLOURS[name], label=LABELS[name])
    cdf.set_xlabel("success latency, start to result (ms)")
    cdf.set_ylabel("fraction of sagas")
    cdf.set_title("Latency distribution, one at a time (happy)")
    cdf.grid(alpha=0.3)
    cdf.legend(loc="lower right")

    levels = [int(c) for c in results["throughput"]]
    for name in (BASELINE, OURS):
        points = [results["throughput"][str(c)][name] for c in levels]
        lat.plot(levels, [p["p50_ms"] for p in points], marker="o", color=COLOURS[name], label=LABELS[name])
        rate.plot(levels, [p["sagas_per_s"] for p in points], marker="o", color=COLOURS[name], label=LABELS[name])
    for axis, ylabel, title in (
        (lat, "p50 start to result (ms)", "Latency against concurrency"),
        (rate, "completed sagas per second", "Throughput against concurrency"),
    ):
        axis.set_xscale("log")
        axis.set_xticks(levels, [str(c) for c in levels])
        axis.set_xlabel("sagas in flight at once")
        axis.set_ylabel(ylabel)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
