"""Ours against the baseline: the same-run ratios the report and the tests read, and
which targets they meet.

Every figure is a same-run ratio because the machines it runs on are shared and
noisy: absolute times move with the other jobs, ratios much less.
"""

from __future__ import annotations

from typing import Any

from bench.floor_phase import floor_ratios
from bench.realistic import realistic_ratios
from bench.sides import BASELINE, OURS, SEQUENTIAL
from bench.stats import ratio


def ratios(r: dict[str, Any], c_hi: int) -> dict[str, float]:
    """``r`` holds the phases by their results key (throughput keyed by concurrency)."""
    latency, consistent, cost, throughput = r["latency_ms"], r["time_to_consistent_ms"], r["cost"], r["throughput"]
    backlog, form = r["rollback_under_backlog"], r["form_start_ms"]

    def vs(key: str, figures: dict[str, dict[str, Any]], other: str = BASELINE) -> float:
        return ratio(figures[OURS][key], figures[other][key])

    return {
        "p50_latency": vs("p50", latency),
        "p95_latency": vs("p95", latency),
        "p99_latency": vs("p99", latency),
        **{f"throughput_{c}": vs("sagas_per_s", t) for c, t in throughput.items()},
        "p50_time_to_consistent": vs("p50", consistent),
        "p95_time_to_consistent": vs("p95", consistent),
        "p50_latency_vs_sequential": vs("p50", latency, SEQUENTIAL),
        "p50_time_to_consistent_vs_sequential": vs("p50", consistent, SEQUENTIAL),
        "history_events": vs("history_events", cost),
        "state_transitions": vs("state_transitions", cost),
        "worker_cpu_per_saga": vs("worker_cpu_ms_per_saga", throughput[c_hi]),
        "server_cpu_per_saga": vs("server_cpu_ms_per_saga", throughput[c_hi]),
        "worker_peak_rss": vs("peak_rss_mib", r["memory"]),
        "web_submit_p50": vs("p50", r["web_ms"]),
        "scale_2_workers": r["scale"]["ratio"],
        "scale_2_workers_capped": r["scale_capped"]["ratio"],
        # From the moment the rollback starts (the booking failure) to consistent.
        "rollback_under_backlog": backlog["priority"]["unwind_ratio"],
        "rollback_under_backlog_from_start_call": backlog["priority"]["ratio"],
        "rollback_under_backlog_without_priority": backlog["default"]["ratio"],
        "rollback_under_backlog_escalated": backlog["escalated"]["ratio"],
        "rollback_under_backlog_started_high": backlog["started_high"]["ratio"],
        "rollback_unwind_under_backlog": backlog["priority"]["unwind_ratio"],
        "rollback_unwind_under_backlog_without_priority": backlog["default"]["unwind_ratio"],
        "rollback_unwind_under_backlog_escalated": backlog["escalated"]["unwind_ratio"],
        **floor_ratios(r["floor"]),
        **realistic_ratios(r["realistic"]),
        "overhead_ms_vs_floor": r["overhead"]["overhead_ms"],
        # CPU per saga at the reference concurrency (100 in flight), each process's own /proc time.
        "worker_cpu_ratio": vs("worker_cpu_ms_per_saga", throughput[c_hi]),
        "server_cpu_ratio": vs("server_cpu_ms_per_saga", throughput[c_hi]),
        "form_update_with_start_vs_start_then_result": ratio(
            form["update_with_start"]["p50"], form["start_then_result"]["p50"]
        ),
    }


def targets(ratios: dict[str, float], memory: dict[str, Any], c_hi: int, inflight: int) -> dict[str, bool]:
    """The goals the design was set, each met or missed in this run."""
    return {
        "p50_latency <= 0.25": ratios["p50_latency"] <= 0.25,
        "p50_time_to_consistent <= 0.30": ratios["p50_time_to_consistent"] <= 0.30,
        f"throughput_{c_hi} >= 2.0": ratios[f"throughput_{c_hi}"] >= 2.0,
        "history_events <= 1.0": ratios["history_events"] <= 1.0,
        f"worker peak RSS <= 300 MiB with {inflight} in flight": memory[OURS]["peak_rss_mib"] <= 300,
        "web submit >= 10x faster": ratios["web_submit_p50"] <= 0.1,
        "scale_2_workers >= 1.6": ratios["scale_2_workers"] >= 1.6,
        "scale_2_workers_capped >= 1.8": ratios["scale_2_workers_capped"] >= 1.8,
        "rollback_under_backlog <= 2.0": ratios["rollback_under_backlog"] <= 2.0,
        "latency_vs_limit_realistic <= 1.10": ratios["latency_vs_limit_realistic"] <= 1.10,
        "overhead_ms_vs_floor <= 10 ms": ratios["overhead_ms_vs_floor"] <= 10,
        f"worker_cpu_ratio at {c_hi} in flight <= 0.5": ratios["worker_cpu_ratio"] <= 0.5,
        f"server_cpu_ratio at {c_hi} in flight <= 0.7": ratios["server_cpu_ratio"] <= 0.7,
    }


def cost_per_saga(cost: dict[str, dict[str, float]], load: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Each side's history figures, with its CPU per saga at the reference concurrency (``load``)."""
    return {
        name: {
            **cost[name],
            **(
                {
                    "worker_cpu_ms": load[name]["worker_cpu_ms_per_saga"],
                    "server_cpu_ms": load[name]["server_cpu_ms_per_saga"],
                }
                if name in load
                else {}
            ),
        }
        for name in cost
    }
