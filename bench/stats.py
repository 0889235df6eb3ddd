"""The benchmark's arithmetic on its samples: percentiles, summaries, ratios, merged loads.

Pure functions of numbers, so that every experiment and the report compute a
figure the same way.
"""

from __future__ import annotations


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 0.50),
        "p95": pct(values, 0.95),
        "p99": pct(values, 0.99),
        "mean": sum(values) / len(values),
        "min": min(values),
        "max": max(values),
    }


def merge_loads(loads: list[dict[str, float]]) -> dict[str, float]:
    sagas = sum(x["sagas"] for x in loads)
    seconds = sum(x["seconds"] for x in loads)
    out = {"sagas": sagas, "seconds": seconds, "sagas_per_s": sagas / seconds}
    for key in loads[0]:
        if key.endswith("_per_saga") or key in ("p50_ms", "mean_ms"):
            out[key] = sum(x[key] * x["sagas"] for x in loads) / sagas  # p50: mean of the halves' medians
        elif key.endswith("_cores"):
            out[key] = sum(x[key] * x["seconds"] for x in loads) / seconds
    out["worker_peak_rss_mib"] = max(x["worker_peak_rss_mib"] for x in loads)
    return out


def ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else float("nan")
