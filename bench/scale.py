"""Scale-out: throughput on one task queue with one worker process, then two, then one (A B B A).

Shows whether a second worker process adds throughput on this machine; it can
only where each worker has its own cores and the server has headroom.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from bench.harness import Harness, log
from bench.sides import OURS, one_saga
from bench.stats import merge_loads


async def one_worker_against_two(h: Harness) -> dict[str, Any]:
    """Throughput on one queue with one worker process, then two, then one (A B B A)."""
    queue = f"bench-scale-{uuid.uuid4().hex[:6]}"
    h.stack.start_worker("worker-scale-1", queue)
    await h.wait_for_pollers(queue, 1)
    await one_saga(h.client, OURS, queue=queue)  # warm
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    try:
        for workers in (1, 2, 2, 1):
            if workers == 2 and "worker-scale-2" not in h.stack.procs:
                h.stack.start_worker("worker-scale-2", queue)
                await h.wait_for_pollers(queue, 2)
                await one_saga(h.client, OURS, queue=queue)
            if workers == 1 and "worker-scale-2" in h.stack.procs:
                h.stack.stop_one("worker-scale-2")
            pids = {f"worker_{i}": h.stack.pid(f"worker-scale-{i}") for i in range(1, workers + 1)}
            pids["server"] = h.stack.pid("temporal")
            half = h.plan.scale_sagas // 2
            runs[workers].append(await h.load(OURS, half, h.plan.scale_concurrency, pids, queue=queue))
    finally:
        for name in ("worker-scale-2", "worker-scale-1"):
            if name in h.stack.procs:
                h.stack.stop_one(name)
    one, two = merge_loads(runs[1]), merge_loads(runs[2])
    log(f"scale: 1 worker {one['sagas_per_s']:.1f} sagas/s, 2 workers {two['sagas_per_s']:.1f} sagas/s")
    return {
        "concurrency": h.plan.scale_concurrency,
        "one_worker": one,
        "two_workers": two,
        "ratio": two["sagas_per_s"] / one["sagas_per_s"],
        "load_average": os.getloadavg(),
    }
