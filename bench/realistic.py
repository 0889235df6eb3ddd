"""Ours against real-world provider latency, and against each design's physical limit.

The provider service is restarted with ``--latency-profile realistic`` (car
about 120 ms, hotel 180 ms, flight 350 ms, log-normal jitter; seeded), then
ours (parallel), ours sequential, the seed-style baseline and the same-shape
no-op floors (``bench.floor``) run interleaved (A B C D E E D C B A). A
design's limit is what the providers' own answer times allow it, read from
the provider service per booking (``GET /stats?booking_id=``), plus the
workflow of its shape that does nothing else:

- parallel: the p50 over sagas of the slowest of the three reservations'
  answers, plus the parallel no-op floor's p50;
- sequential: the p50 of the three answers' sum, plus the sequential no-op
  floor's p50.

The phase runs on a ledger file of its own (``FRESH_LEDGER``), and the
providers are restarted as they were before, so later phases see the latency
and the ledger they always did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.harness import Harness, interleaved, log
from bench.sides import BASELINE, FLOOR_NOOP, FLOOR_NOOP_SEQUENTIAL, OURS, SEQUENTIAL, one_saga
from bench.stats import pct, ratio, summary
from trip.models import Kind

PROFILE = "realistic"
#: The calls a happy saga waits for: one reservation per provider.
RESERVATIONS = tuple(f"{kind.value} reservations" for kind in Kind)
DESIGNS = {OURS: FLOOR_NOOP, SEQUENTIAL: FLOOR_NOOP_SEQUENTIAL, BASELINE: FLOOR_NOOP_SEQUENTIAL}
#: A ledger of its own: the stand-in provider counts a day's bookings to answer a reservation, so
#: on the ledger the earlier phases filled (thousands of bookings on the demo trip's day) every
#: call would take milliseconds more than a real provider's would.
FRESH_LEDGER = "ledger-realistic.db"


async def answer_times(providers_url: str, booking_ids: list[str]) -> dict[str, dict[str, float]]:
    """Each booking's reservation answer times, as the provider service measured them."""
    out: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(base_url=providers_url, timeout=10) as http:
        for start in range(0, len(booking_ids), 50):
            chunk = booking_ids[start : start + 50]
            response = await http.get("/stats", params=[("booking_id", b) for b in chunk])
            out.update(response.json()["answer_ms"])
    return out


def limits(
    samples: dict[str, list[float]], ids: dict[str, list[str]], answers: dict[str, dict[str, float]]
) -> dict[str, dict[str, Any]]:
    """Each design's physical limit: its providers' answers (max or sum) plus its no-op floor,
    and per saga what its providers took (``None`` where the provider service lost count)."""
    out: dict[str, dict[str, Any]] = {}
    for side, floor_side in DESIGNS.items():
        per_saga: list[float | None] = []
        for booking_id in ids[side]:
            times = answers.get(booking_id, {})
            measured = [times[call] for call in RESERVATIONS if call in times]
            complete = len(measured) == len(RESERVATIONS)
            per_saga.append((max(measured) if side == OURS else sum(measured)) if complete else None)
        providers = [p for p in per_saga if p is not None]
        floor = pct(samples[floor_side], 0.5)
        excess = [t - p for t, p in zip(samples[side], per_saga, strict=True) if p is not None]
        out[side] = {
            "providers_p50_ms": pct(providers, 0.5),
            "floor_p50_ms": floor,
            "limit_ms": pct(providers, 0.5) + floor,
            "sagas_measured": len(providers),
            "providers_ms": per_saga,
            # Each saga's time above its own providers' answers: the overhead under load, saga by saga.
            "excess_p50_ms": pct(excess, 0.5),
        }
    return out


async def realistic_latency(h: Harness) -> dict[str, Any]:
    log(f"realistic provider latency: {h.plan.realistic_runs} sagas per side against each design's limit")
    h.stack.restart_providers(h.plan.inflight_latency_ms, profile=PROFILE, ledger=FRESH_LEDGER)
    try:
        ids: dict[str, list[str]] = {side: [] for side in dict.fromkeys((*DESIGNS, *DESIGNS.values()))}

        def variant(side: str) -> Callable[[], Awaitable[float]]:
            async def run() -> float:
                seconds, workflow_id, _ = await one_saga(h.client, side)
                ids[side].append(workflow_id)
                return seconds * 1000

            return run

        for side in ids:  # the workers' HTTP clients reconnect to the new provider process
            await one_saga(h.client, side)
        samples = await interleaved(h.plan.realistic_runs, {side: variant(side) for side in ids})
        answers = await answer_times(h.stack.providers_url, [b for side in DESIGNS for b in ids[side]])
    finally:
        h.stack.restart_providers(h.plan.inflight_latency_ms)
    found = limits(samples, ids, answers)
    for side, limit in found.items():
        log(
            f"  {side}: p50 {pct(samples[side], 0.5):.0f} ms, limit {limit['limit_ms']:.0f} ms, "
            f"p50 above its own providers {limit['excess_p50_ms']:.0f} ms"
        )
    return {
        "profile": PROFILE,
        "latency_ms": {side: {**summary(v), "samples_ms": v} for side, v in samples.items()},
        "limits": found,
    }


def realistic_ratios(r: dict[str, Any]) -> dict[str, float]:
    lat, lim = r["latency_ms"], r["limits"]
    return {
        "latency_vs_limit_realistic": ratio(lat[OURS]["p50"], lim[OURS]["limit_ms"]),
        "latency_vs_seed_style_realistic": ratio(lat[OURS]["p50"], lat[BASELINE]["p50"]),
        "sequential_vs_limit_realistic": ratio(lat[SEQUENTIAL]["p50"], lim[SEQUENTIAL]["limit_ms"]),
        "seed_style_vs_limit_realistic": ratio(lat[BASELINE]["p50"], lim[BASELINE]["limit_ms"]),
    }
