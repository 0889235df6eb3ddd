"""Minimal reproduction of the per-dispatch delay: why each workflow task waited about 35 ms.

A trivial workflow with 0, 1 or 3 no-op activities on an in-process,
unsandboxed worker against a private dev server. It prints the p50 start →
result and the p50 WorkflowTaskScheduled → WorkflowTaskStarted gap read from
the histories. Extra dev-server flags (for example ``--dynamic-config-value
KEY=VALUE``) come after ``--`` so each candidate cause is one command line:

    python -m bench.dispatch --runs 20 -- --dynamic-config-value matching.X=Y

It never touches the project's server or ports: it picks a free port and a
temporary database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from wiring.local_stack import free_port, temporal_cli_path

ACTIVITY_SLEEP_S = 0.0


@activity.defn
async def noop() -> None:
    # An optional sleep tells "the worker had just re-polled" from "the poll
    # had been waiting a while" when the next workflow task is dispatched.
    if ACTIVITY_SLEEP_S:
        await asyncio.sleep(ACTIVITY_SLEEP_S)


@workflow.defn
class DispatchWorkflow:
    @workflow.run
    async def run(self, activities: int) -> int:
        for _ in range(activities):
            await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=10))
        return activities


def runqueue_wait_ms(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a CPU
    (second field of /proc/PID/task/TID/schedstat), in milliseconds. Linux only."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass  # a thread that exited between glob and read
    return total / 1e6


def matching_counters(metrics_port: int) -> dict[str, float]:
    """Sums of the matching service's poll and add-task counters from the dev
    server's Prometheus endpoint, to see how many tasks missed the sync match."""
    import urllib.request

    sums = {"poll_success": 0.0, "poll_success_sync": 0.0, "backlog_writes": 0.0}
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            value = line.rsplit(" ", 1)[-1]
            if name in ("poll_success", "poll_success_sync"):
                sums[name] += float(value)
            elif name in ("service_latency_sum", "service_latency_count") and (
                'operation="RecordWorkflowTaskStarted"' in line and 'service_name="history"' in line
            ):
                sums[f"record_started_{name.rsplit('_', 1)[1]}"] = sums.get(
                    f"record_started_{name.rsplit('_', 1)[1]}", 0.0
                ) + float(value)
            elif (
                name.startswith("task_latency")
                and name.endswith(("_sum", "_count"))
                and ('operation="TransferActiveTaskWorkflowTask"' in line)
            ):
                # History's transfer queue: how long the workflow task waited before it was pushed to matching.
                sums[f"transfer_{name}"] = sums.get(f"transfer_{name}", 0.0) + float(value)
            elif name == "persistence_requests" and 'operation="CreateTasks"' in line:
                sums["backlog_writes"] += float(value)  # a task that missed the sync match
    return sums


def start_server(port: int, db: Path | None, extra: list[str]) -> subprocess.Popen[bytes]:
    cmd = [
        temporal_cli_path(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--headless",
        "--log-level",
        "error",
        *extra,
    ]
    if db is not None:  # without it the dev server keeps SQLite in memory
        cmd += ["--db-filename", str(db)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def connect(port: int, timeout: float = 30.0) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(f"127.0.0.1:{port}")
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def wft_gaps(client: Client, workflow_id: str) -> tuple[list[float], list[float]]:
    """Milliseconds from each WorkflowTaskScheduled to its WorkflowTaskStarted
    (dispatch), and from each WorkflowTaskStarted to its WorkflowTaskCompleted
    (the worker's turn, including both RPCs)."""
    scheduled: dict[int, float] = {}
    started: dict[int, float] = {}
    gaps, turns = [], []
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        ts = event.event_time.ToNanoseconds() / 1e6
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            scheduled[event.event_id] = ts
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            sched_id = event.workflow_task_started_event_attributes.scheduled_event_id
            started[event.event_id] = ts
            if sched_id in scheduled:
                gaps.append(ts - scheduled[sched_id])
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            start_id = event.workflow_task_completed_event_attributes.started_event_id
            if start_id in started:
                turns.append(ts - started[start_id])
    return gaps, turns


async def print_timeline(client: Client, workflow_id: str) -> None:
    """Every event of one run, in ms since the first, to see where the time goes."""
    t0 = None
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        ts = event.event_time.ToNanoseconds() / 1e6
        t0 = ts if t0 is None else t0
        print(f"  {ts - t0:8.1f} ms  {EventType.Name(event.event_type)}")


async def measure(
    client: Client, runs: int, activities: int, no_eager: bool, no_cache: bool = False, timeline: bool = False
) -> dict[str, float]:
    queue = f"dispatch-{uuid.uuid4()}"
    latencies, gaps, turns = [], [], []
    async with Worker(
        client,
        task_queue=queue,
        workflows=[DispatchWorkflow],
        activities=[noop],
        workflow_runner=UnsandboxedWorkflowRunner(),
        disable_eager_activity_execution=no_eager,
        # 0 turns sticky execution off: every task goes to the normal queue.
        max_cached_workflows=0 if no_cache else 1000,
    ):
        for i in range(runs + 2):
            wid = f"{queue}-{i}"
            t0 = time.perf_counter()
            await client.execute_workflow(DispatchWorkflow.run, activities, id=wid, task_queue=queue)
            elapsed = (time.perf_counter() - t0) * 1000
            if i >= 2:  # the first runs warm the worker and the queue
                latencies.append(elapsed)
                run_gaps, run_turns = await wft_gaps(client, wid)
                gaps.extend(run_gaps)
                turns.extend(run_turns)
        if timeline:
            await print_timeline(client, wid)
    return {
        "p50_ms": statistics.median(latencies),
        "p50_wft_gap_ms": statistics.median(gaps),
        "p50_wft_turn_ms": statistics.median(turns),
    }


async def main_async(args: argparse.Namespace, extra: list[str]) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="dispatch-") as tmp:
        proc = start_server(port, None if args.in_memory else Path(tmp) / "db.sqlite", extra)
        try:
            client = await connect(port)
            for n in args.activities:
                waited = runqueue_wait_ms(proc.pid) + runqueue_wait_ms(os.getpid())
                before = matching_counters(args.metrics_port) if args.metrics_port else {}
                result = await measure(client, args.runs, n, args.no_eager, args.no_cache, args.timeline)
                waited = runqueue_wait_ms(proc.pid) + runqueue_wait_ms(os.getpid()) - waited
                if args.metrics_port:
                    after = matching_counters(args.metrics_port)
                    print({key: after[key] - before.get(key, 0.0) for key in after}, flush=True)
                db = "memory" if args.in_memory else "file"
                print(
                    f"activities={n} runs={args.runs} db={db} flags={' '.join(extra) or '-'} "
                    f"eager={not args.no_eager} cache={not args.no_cache} sleep={args.activity_sleep_ms:g}ms "
                    f"p50={result['p50_ms']:.1f}ms "
                    f"wft_gap_p50={result['p50_wft_gap_ms']:.1f}ms "
                    f"wft_turn_p50={result['p50_wft_turn_ms']:.1f}ms "
                    f"runqueue_wait_per_run={waited / (args.runs + 2):.1f}ms",
                    flush=True,
                )
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def main() -> None:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--activities", type=int, nargs="+", default=[0, 1, 3])
    parser.add_argument("--no-eager", action="store_true")
    parser.add_argument("--metrics-port", type=int, default=0, help="also pass it to the server after --")
    parser.add_argument("--no-cache", action="store_true", help="max_cached_workflows=0 (no sticky queue)")
    parser.add_argument("--activity-sleep-ms", type=float, default=0.0)
    parser.add_argument("--in-memory", action="store_true", help="SQLite in memory instead of a file")
    parser.add_argument("--timeline", action="store_true", help="print the last run's history timeline")
    args = parser.parse_args(argv)
    global ACTIVITY_SLEEP_S
    ACTIVITY_SLEEP_S = args.activity_sleep_ms / 1000
    asyncio.run(main_async(args, extra))


if __name__ == "__main__":
    main()
