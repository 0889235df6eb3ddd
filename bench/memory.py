"""Worker memory: peak resident set of a fresh worker with thousands of slow sagas in flight.

Runs last: each phase leaves its sagas open on a queue nobody polls again, so
they cost the later phases nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from bench.harness import Harness, bounded_gather, log
from bench.sides import BASELINE, OURS, start_side
from bench.stack import RssSampler
from trip.models import Scenario
from wiring.paused_status import describe_execution


async def peak_rss_in_flight(h: Harness, side: str, count: int, flags: list[str]) -> dict[str, Any]:
    """Peak RSS of a fresh worker (``flags``) with ``count`` slow sagas open at once.

    The sagas are started as fast as the server takes them; the window
    closes ``inflight_hold_s`` after the last one has had its first
    workflow task (its bookings are scheduled), so every one of them has
    passed through the worker. They are left open: the worker is stopped
    and its queue is never polled again, so they cost the later phases
    nothing; this phase runs last.
    """
    queue = f"bench-memory-{uuid.uuid4().hex[:6]}"
    name = f"memory-{side}-{uuid.uuid4().hex[:4]}"
    if side == BASELINE:
        h.stack.start_seed_worker(name, queue)
    else:
        h.stack.start_worker(name, queue, *flags)
    try:
        await h.wait_for_pollers(queue, 1)
        with RssSampler(h.stack.pid(name)) as sampler:
            started = time.perf_counter()
            handles = await bounded_gather(
                100, [start_side(h.client, side, Scenario.SLOW, queue=queue) for _ in range(count)]
            )
            start_seconds = time.perf_counter() - started
            for handle in handles[-10:]:  # started last: scheduled last
                await h.wait_scheduled(handle.id)
            seen_seconds = time.perf_counter() - started
            await asyncio.sleep(h.plan.inflight_hold_s)  # the sampling window itself, not a wait for state
            sampled = handles[:: max(1, count // 50)]
            closed = sum([(await describe_execution(h.client, handle.id)).closed for handle in sampled])
    finally:
        h.stack.stop_one(name)
    log(f"memory on {name} {flags}: peak RSS {sampler.peak:.1f} MiB with {count} in flight")
    return {
        "sagas": count,
        "flags": flags,
        "peak_rss_mib": sampler.peak,
        "start_all_seconds": start_seconds,
        "all_scheduled_seconds": seen_seconds,
        "closed_in_sample": closed,
        "provider_latency_ms": h.plan.inflight_latency_ms,
    }


async def memory_phase(h: Harness) -> dict[str, dict[str, Any]]:
    """The baseline's worker and ours with ``plan.inflight`` slow sagas each; in a full run
    also ours with a cache large enough to keep every one of them."""
    log(f"memory: {h.plan.inflight} slow sagas in flight on fresh workers")
    memory = {
        BASELINE: await peak_rss_in_flight(h, BASELINE, h.plan.inflight, []),
        OURS: await peak_rss_in_flight(h, OURS, h.plan.inflight, []),
    }
    if h.plan.optimisations:
        memory["cache_5000"] = await peak_rss_in_flight(h, OURS, h.plan.inflight, ["--max-cached-workflows", "5000"])
    return memory
