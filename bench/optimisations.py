"""The optimisations, each measured against the shipped choice in the same run.

Eager workflow start, one shared HTTP client per worker, and worker variants
started with other flags (the strict sandbox, no workflow cache, poller
autoscaling) against the shipped worker, in A B B A halves. They justify what
the worker ships with; ``make bench`` runs them, the quick run does not.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from activities import BookingActivities, make_http_client
from bench.harness import Harness, interleaved, log
from bench.memory import peak_rss_in_flight
from bench.sides import OURS, one_saga
from bench.stats import merge_loads, pct
from wiring.worker import build_worker


async def eager_start(h: Harness) -> dict[str, Any]:
    # Eager start hands the first workflow task to a worker in the starting
    # process, so this experiment runs an in-process worker.
    queue = f"bench-eager-{uuid.uuid4().hex[:6]}"
    used = []
    async with (
        make_http_client(h.stack.providers_url) as http,
        build_worker(h.client, BookingActivities(http), task_queue=queue),
    ):

        def variant(eager: bool) -> Callable[[], Awaitable[float]]:
            async def run() -> float:
                seconds, _, was_eager = await one_saga(h.client, OURS, queue=queue, eager=eager)
                if eager:
                    used.append(was_eager)
                return seconds * 1000

            return run

        await one_saga(h.client, OURS, queue=queue)  # warm the in-process worker
        samples = await interleaved(h.plan.eager_runs, {"eager": variant(True), "normal": variant(False)})
    return {
        "eager_p50_ms": pct(samples["eager"], 0.5),
        "normal_p50_ms": pct(samples["normal"], 0.5),
        "ratio": pct(samples["eager"], 0.5) / pct(samples["normal"], 0.5),
        "eagerly_started": sum(used),
        "runs": len(used),
    }


async def shared_http_client(h: Harness) -> dict[str, Any]:
    async def call(client: httpx.AsyncClient) -> None:
        key = uuid.uuid4().hex
        response = await client.post(
            "/car/reservations",
            json={
                "booking_id": key,
                "idempotency_key": key,
                "traveller": {"name": "Bench", "email": "b@ex.io"},
                "details": {"city": "Lisbon", "pickup": "2030-01-01", "dropoff": "2030-01-02"},
            },
        )
        response.raise_for_status()

    async with make_http_client(h.stack.providers_url) as shared:

        async def reuse() -> float:
            started = time.perf_counter()
            await call(shared)
            return (time.perf_counter() - started) * 1000

        async def fresh() -> float:
            started = time.perf_counter()
            async with make_http_client(h.stack.providers_url) as client:
                await call(client)
            return (time.perf_counter() - started) * 1000

        samples = await interleaved(h.plan.http_calls, {"shared": reuse, "per_call": fresh})
    return {
        "shared_p50_ms": pct(samples["shared"], 0.5),
        "per_call_p50_ms": pct(samples["per_call"], 0.5),
        "ratio": pct(samples["shared"], 0.5) / pct(samples["per_call"], 0.5),
    }


async def worker_variant(h: Harness, flags: list[str]) -> dict[str, Any]:
    """Parallel sagas on a worker started with ``flags`` against our shipped worker."""
    queue = f"bench-variant-{uuid.uuid4().hex[:6]}"
    h.stack.start_worker("worker-variant", queue, *flags)
    try:
        await h.wait_for_pollers(queue, 1)
        await one_saga(h.client, OURS, queue=queue)  # warm
        n = max(10, h.plan.throughput_sagas // 8)
        runs: dict[str, list[dict[str, float]]] = {"variant": [], "shipped": []}
        for side in ("variant", "shipped", "shipped", "variant"):  # ABBA against drift
            if side == "variant":
                pids = {"worker": h.stack.pid("worker-variant"), "server": h.stack.pid("temporal")}
                runs[side].append(await h.load(OURS, n, 50, pids, queue=queue))
            else:
                runs[side].append(await h.load(OURS, n, 50, h.side_pids(OURS)))
        variant, shipped = (merge_loads(runs[side]) for side in ("variant", "shipped"))
    finally:
        h.stack.stop_one("worker-variant")
    return {
        "flags": flags,
        "variant": variant,
        "shipped": shipped,
        "ratio_throughput": shipped["sagas_per_s"] / variant["sagas_per_s"],
        "ratio_worker_cpu": shipped["worker_cpu_ms_per_saga"] / variant["worker_cpu_ms_per_saga"],
    }


async def optimisations(h: Harness) -> dict[str, Any]:
    log("optimisations: eager start, shared HTTP client, workflow cache, sandbox, pollers")
    return {
        "eager_start": await eager_start(h),
        "shared_http_client": await shared_http_client(h),
        "shared_module_sandbox": await worker_variant(h, ["--strict-sandbox"]),
        "workflow_cache": await worker_variant(h, ["--max-cached-workflows", "0"]),
        "poller_autoscaling": await worker_variant(h, ["--poller-autoscaling"]),
    }


async def memory_variants(h: Harness) -> dict[str, Any]:
    """Peak RSS of worker variants against the shipped worker, ``plan.variant_inflight`` slow
    sagas each; with the memory phase, after every other phase."""
    n = h.plan.variant_inflight
    shipped = await peak_rss_in_flight(h, OURS, n, [])
    out = {}
    for name, flags in {
        "poller_autoscaling_memory": ["--poller-autoscaling"],
        "activity_slots_200_memory": ["--max-concurrent-activities", "200"],
    }.items():
        variant = await peak_rss_in_flight(h, OURS, n, flags)
        out[name] = {
            "flags": flags,
            "variant": variant,
            "shipped": shipped,
            "delta_peak_rss_mib": variant["peak_rss_mib"] - shipped["peak_rss_mib"],
        }
    return out
