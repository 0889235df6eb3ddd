"""Scale-out: throughput on one task queue with one worker process, then two, then one (A B B A).

Shows whether a second worker process adds throughput on this machine; it can
only where each worker has its own cores and the server has headroom. So it
runs twice: uncapped, and with each worker process capped to ``CAPPED_CORES``
of a core (``bench.cpucap``), where the workers, not the server, are the
bottleneck; then the capped throughput against 1, 2, 3... capped workers shows
the knee where the server (uncapped) becomes the bottleneck.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from bench.cpucap import CpuCap, detect
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


#: Each capped worker's share of one core. Small, so that two capped workers
#: need less server CPU than the server gets on two cores shared with other
#: jobs: at a fifth of a core the knee came at two workers here (the server got
#: about 0.4 cores and took about 70 ms of CPU per saga).
CAPPED_CORES = 0.1


#: Sagas in flight at once on one or two capped workers. Few, because a capped
#: worker takes as many workflow tasks as it has slots and runs them at its
#: capped speed: with 200 in flight one worker at a tenth of a core let them time
#: out (10 s) and took about 117 ms of CPU per saga instead of 37. Past two
#: workers the knee offers half as many per worker, as the two-worker runs do.
CAPPED_INFLIGHT = 10


async def _capped_workers(h: Harness, cap: CpuCap, queue: str, names: list[str], workers: int) -> None:
    """Start or stop capped workers until ``workers`` of them poll ``queue``; each is
    capped once it polls (its start-up, imports and all, runs at full speed)."""
    while len(names) > workers:
        h.stack.stop_one(names.pop())
    while len(names) < workers:
        name = f"worker-capped-{queue[-6:]}-{len(names) + 1}"
        h.stack.start_worker(name, queue)
        names.append(name)
        await h.wait_for_pollers(queue, len(names))
        cap.cap(h.stack.pid(name), CAPPED_CORES)
    await one_saga(h.client, OURS, queue=queue)  # every worker warm behind its cap


def _pids(h: Harness, names: list[str]) -> dict[str, int]:
    pids = {f"worker_{i}": h.stack.pid(name) for i, name in enumerate(names, 1)}
    pids["server"] = h.stack.pid("temporal")
    return pids


async def capped_scale(h: Harness) -> dict[str, Any]:
    """Throughput with each worker process capped to ``CAPPED_CORES``: one worker
    against two (A B B A), then 1..max(``plan.capped_workers``) capped workers in turn
    (the knee; 1 and 2 from the A B B A runs). A fresh queue of its own, so that no other worker serves it."""
    cap = detect()
    log(f"scale, capped: each worker at {CAPPED_CORES} of a core by {cap.method}")
    queue = f"bench-capped-{uuid.uuid4().hex[:6]}"
    names: list[str] = []
    half = max(10, h.plan.scale_sagas // 4)
    inflight = min(CAPPED_INFLIGHT, h.plan.scale_concurrency)
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    knee: dict[int, dict[str, float]] = {}
    try:
        for workers in (1, 2, 2, 1):
            await _capped_workers(h, cap, queue, names, workers)
            runs[workers].append(await h.load(OURS, half, inflight, _pids(h, names), queue=queue))
        for workers in h.plan.capped_workers:
            if workers in runs:
                knee[workers] = merge_loads(runs[workers])  # measured above, A B B A
                continue
            await _capped_workers(h, cap, queue, names, workers)
            # Offered load grows with the workers: the same sagas and in-flight share each.
            sagas, offered = half * workers // 2, inflight * workers // 2
            knee[workers] = await h.load(OURS, sagas, offered, _pids(h, names), queue=queue)
            log(f"scale, capped: {workers} workers {knee[workers]['sagas_per_s']:.1f} sagas/s")
    finally:
        while names:
            h.stack.stop_one(names.pop())
        cap.close()
    one, two = merge_loads(runs[1]), merge_loads(runs[2])
    log(f"scale, capped: 1 worker {one['sagas_per_s']:.1f} sagas/s, 2 workers {two['sagas_per_s']:.1f} sagas/s")
    return {
        "method": cap.method,
        "cores_per_worker": CAPPED_CORES,
        "concurrency": inflight,
        "one_worker": one,
        "two_workers": two,
        "ratio": two["sagas_per_s"] / one["sagas_per_s"],
        "knee": {str(n): figures for n, figures in knee.items()},
        "load_average": os.getloadavg(),
    }
