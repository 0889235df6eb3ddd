"""Our overhead at zero provider latency: ours against the same-shape no-op floor.

``FloorNoop`` (``bench.floor``) has our saga's shape, two workflow tasks and
one round of three parallel activities, with activities that do nothing. Run
interleaved (A B B A) with ours while the providers answer at once, the
difference of the p50s is what our own path costs: HTTP and the provider
service, payload conversion and the codec, interceptors, search-attribute
upserts, the worker's settings. Where that time goes inside the processes is
in docs/benchmarks.md ("Where the overhead goes"), from a py-spy profile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bench.harness import Harness, interleaved, log
from bench.histories import time_split
from bench.sides import FLOOR_NOOP, OURS, one_saga
from bench.stats import pct, summary


async def overhead_vs_floor(h: Harness) -> dict[str, Any]:
    log(f"overhead: ours against the same-shape no-op floor, {h.plan.overhead_runs} sagas each")
    ids: dict[str, list[str]] = {OURS: [], FLOOR_NOOP: []}

    def variant(side: str) -> Callable[[], Awaitable[float]]:
        async def run() -> float:
            seconds, workflow_id, _ = await one_saga(h.client, side)
            ids[side].append(workflow_id)
            return seconds * 1000

        return run

    # On a ledger of its own, as the realistic phase: the stand-in provider's availability count
    # grows with the bookings earlier phases left on the demo trip's day, which no real provider's does.
    h.stack.restart_providers(h.plan.inflight_latency_ms, ledger="ledger-overhead.db")
    try:
        for side in ids:  # the workers' HTTP clients reconnect to the new provider process
            await one_saga(h.client, side)
        samples = await interleaved(h.plan.overhead_runs, {side: variant(side) for side in ids})
    finally:
        h.stack.restart_providers(h.plan.inflight_latency_ms)
    split = {}
    for side, side_ids in ids.items():
        histories = [await h.client.get_workflow_handle(w).fetch_history() for w in side_ids[-5:]]
        rows = [time_split(history.events) for history in histories]
        split[side] = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}
    overhead = pct(samples[OURS], 0.5) - pct(samples[FLOOR_NOOP], 0.5)
    log(f"  ours p50 {pct(samples[OURS], 0.5):.1f} ms, floor p50 {pct(samples[FLOOR_NOOP], 0.5):.1f} ms")
    return {
        "latency_ms": {side: {**summary(v), "samples_ms": v} for side, v in samples.items()},
        "history": split,
        "overhead_ms": overhead,
    }
