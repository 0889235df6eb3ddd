"""What every experiment of ``python -m bench`` shares: the plan, the running stack and a
client, and the ways to put load on it and to wait for another process's state.

An experiment is a module with an async function that takes a ``Harness``; the
command line (``bench.__main__``) starts the stack once and runs them in turn.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bench.plan import Plan, sagas_at
from bench.sides import WORKERS, one_saga
from bench.stack import RssSampler, Stack, cpu_seconds
from bench.stats import merge_loads, pct
from wiring.paused_status import describe_execution


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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


class Harness:
    def __init__(self, plan: Plan, stack: Stack, client: Client) -> None:
        self.plan = plan
        self.stack = stack
        self.client = client

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

    async def reservations_left(self, workflow_ids: list[str]) -> int:
        """How many of these bookings still hold an active reservation."""
        async with httpx.AsyncClient(base_url=self.stack.providers_url, timeout=10) as http:
            left = 0
            for workflow_id in workflow_ids:
                rows = (await http.get("/reservations", params={"booking_id": workflow_id})).json()
                left += any(r["status"] == "active" for r in rows)
        return left

    async def wait_scheduled(self, workflow_id: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while True:
            execution = await describe_execution(self.client, workflow_id)
            if execution.pending_activities or execution.closed:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workflow_id} never scheduled an activity")
            await asyncio.sleep(0.2)  # the server's state: no event to await
