"""The floor phase: the baseline and ours against the two floor workflows (``bench.floor``).

Latency, time to consistent and throughput of a workflow that does nothing and
of the whole trip as local activities in one workflow task, in the same phase
as the baseline: what no design can beat on this machine, so a target beyond
the floor is shown to be out of reach rather than merely missed.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from bench.harness import Harness, interleaved
from bench.histories import time_split
from bench.sides import BASELINE, FLOOR_EMPTY, FLOOR_LOCAL, OURS, one_saga
from bench.stats import ratio, summary
from trip.models import Scenario


async def against_the_floor(h: Harness, concurrency: int) -> dict[str, Any]:
    """The physical floor (``bench.floor``) against the baseline, in one phase: latency
    (happy), time to consistent (flight-sold-out) and throughput at ``concurrency``,
    each interleaved (A B C D D C B A) with the seed-style baseline and ours."""

    def variant(side: str, scenario: Scenario, ids: list[str]) -> Callable[[], Awaitable[float]]:
        async def run() -> float:
            seconds, workflow_id, _ = await one_saga(h.client, side, scenario)
            ids.append(workflow_id)
            return seconds * 1000

        return run

    ids: dict[str, list[str]] = {s: [] for s in (BASELINE, OURS, FLOOR_EMPTY, FLOOR_LOCAL)}
    happy = await interleaved(h.plan.latency_runs, {s: variant(s, Scenario.HAPPY, ids[s]) for s in ids})
    sold_out_ids: dict[str, list[str]] = {s: [] for s in (BASELINE, OURS, FLOOR_LOCAL)}
    sold_out = await interleaved(
        h.plan.consistent_runs,
        {s: variant(s, Scenario.FLIGHT_SOLD_OUT, sold_out_ids[s]) for s in sold_out_ids},
    )
    workflow_tasks = {}
    for side, side_ids in ids.items():
        histories = [await h.client.get_workflow_handle(w).fetch_history() for w in side_ids[-5:]]
        tasks = [time_split(history.events) for history in histories]
        workflow_tasks[side] = sum(t["workflow_tasks"] for t in tasks) / len(tasks)
    load = await h.throughput(concurrency, [BASELINE, FLOOR_EMPTY, FLOOR_LOCAL])
    empty = load[FLOOR_EMPTY]
    cores = len(os.sched_getaffinity(0))
    return {
        "latency_ms": {s: {**summary(v), "samples_ms": v} for s, v in happy.items()},
        "time_to_consistent_ms": {s: {**summary(v), "samples_ms": v} for s, v in sold_out.items()},
        "workflow_tasks": workflow_tasks,
        "reservations_left": await h.reservations_left(sold_out_ids[FLOOR_LOCAL]),
        "concurrency": concurrency,
        "throughput": load,
        # The most empty workflows a second the server could run if it had every core of this machine.
        "server_bound_empty_per_s": cores * 1000 / empty["server_cpu_ms_per_saga"],
        "cores": cores,
    }


def floor_ratios(floor: dict[str, Any]) -> dict[str, float]:
    """The floor against the baseline of the same phase: what no design can beat here."""
    lat, ttc, load = floor["latency_ms"], floor["time_to_consistent_ms"], floor["throughput"]
    c = floor["concurrency"]
    return {
        "floor_empty_p50_latency": ratio(lat[FLOOR_EMPTY]["p50"], lat[BASELINE]["p50"]),
        "floor_local_p50_latency": ratio(lat[FLOOR_LOCAL]["p50"], lat[BASELINE]["p50"]),
        "floor_ours_p50_latency": ratio(lat[OURS]["p50"], lat[BASELINE]["p50"]),
        # A rollback cannot end sooner than a workflow that does nothing.
        "floor_empty_p50_time_to_consistent": ratio(lat[FLOOR_EMPTY]["p50"], ttc[BASELINE]["p50"]),
        "floor_local_p50_time_to_consistent": ratio(ttc[FLOOR_LOCAL]["p50"], ttc[BASELINE]["p50"]),
        f"floor_empty_throughput_{c}": ratio(load[FLOOR_EMPTY]["sagas_per_s"], load[BASELINE]["sagas_per_s"]),
        f"floor_local_throughput_{c}": ratio(load[FLOOR_LOCAL]["sagas_per_s"], load[BASELINE]["sagas_per_s"]),
    }
