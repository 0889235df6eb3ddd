"""How much the benchmark measures: the full run's counts and the quick run's.

``make bench`` runs ``FULL`` (about half an hour here); ``make bench-quick`` and
tests/system/test_bench.py run ``QUICK``, the same harness end to end in about
a minute. Counts only: nothing here starts or measures anything.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    latency_runs: int
    consistent_runs: int
    #: Sagas per side at each concurrency: 3 x the concurrency, within these bounds.
    throughput_sagas: int
    concurrency: tuple[int, ...]
    scale_sagas: int
    scale_concurrency: int
    inflight: int
    inflight_latency_ms: int
    #: Sampling window once every saga in flight has had its first workflow task.
    inflight_hold_s: float
    variant_inflight: int
    backlog: int
    backlog_rounds: int
    web_runs: int
    form_runs: int
    eager_runs: int
    http_calls: int
    optimisations: bool
    #: Sagas per side under the realistic provider latency profile.
    realistic_runs: int = 5
    #: Sagas per side, ours against the same-shape no-op floor, at zero provider latency.
    overhead_runs: int = 10
    #: Measure the CPU levers (``bench.levers``).
    levers: bool = False
    #: Capped worker processes, one count after another: the knee of ``bench.scale.capped_scale``.
    capped_workers: tuple[int, ...] = (1, 2, 3, 4, 6, 8)


FULL = Plan(
    latency_runs=60,
    consistent_runs=30,
    throughput_sagas=600,
    concurrency=(1, 10, 50, 100, 200),
    scale_sagas=400,
    scale_concurrency=200,
    inflight=5000,
    inflight_latency_ms=3000,
    inflight_hold_s=5.0,
    variant_inflight=500,
    backlog=1000,
    backlog_rounds=2,
    web_runs=40,
    form_runs=30,
    eager_runs=40,
    http_calls=300,
    optimisations=True,
    realistic_runs=30,
    overhead_runs=60,
    levers=True,
)
#: Small counts: the harness end to end in about a minute (tests/system/test_bench.py).
QUICK = Plan(
    latency_runs=4,
    consistent_runs=2,
    throughput_sagas=30,
    concurrency=(10, 100),
    scale_sagas=20,
    scale_concurrency=20,
    inflight=40,
    inflight_latency_ms=2000,
    inflight_hold_s=0.2,
    variant_inflight=0,
    backlog=20,
    backlog_rounds=1,
    web_runs=2,
    form_runs=2,
    eager_runs=0,
    http_calls=0,
    optimisations=False,
    capped_workers=(1, 2),
)


def sagas_at(plan: Plan, concurrency: int) -> int:
    return max(20, min(3 * concurrency, plan.throughput_sagas))
