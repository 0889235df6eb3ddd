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


def plot_knee(capped: dict[str, Any], path: Path) -> None:
    """Throughput against the number of capped worker processes (``bench.scale.capped_scale``),
    with the server's CPU beside it: where the line bends, the server is the bottleneck."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workers = sorted(int(n) for n in capped["knee"])
    points = [capped["knee"][str(n)] for n in workers]
    fig, rate = plt.subplots(figsize=(6.5, 4.2))
    rate.plot(workers, [p["sagas_per_s"] for p in points], marker="o", color=COLOURS[OURS], label="sagas/s")
    one = points[0]["sagas_per_s"] if workers[0] == 1 else None
    if one is not None:
        rate.plot(workers, [one * n for n in workers], linestyle=":", color="grey", label="linear in workers")
    rate.set_xticks(workers, [str(n) for n in workers])
    rate.set_xlabel(f"worker processes, each capped to {capped['cores_per_worker']} core ({capped['method']})")
    rate.set_ylabel("completed sagas per second")
    rate.set_title("Scale on capped cores: where the server becomes the bottleneck")
    rate.grid(alpha=0.3)
    server = rate.twinx()
    server.plot(workers, [p["server_cpu_cores"] for p in points], marker="s", color="#b54708", label="server CPU")
    server.set_ylabel("server CPU (cores)")
    lines = rate.get_legend_handles_labels()
    more = server.get_legend_handles_labels()
    rate.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
