"""``python -m bench.fairness``: would fairness keys stop one flood of bookings
from starving another booking's rollback? (a rollback behind a flood waits for the
whole flood at one priority; fairness keys might not)

On its own dev server with ``matching.enableFairness=true`` (off by default on
server 1.32), our shipped worker and the provider service: ``--backlog``
bookings are started with ``Priority(fairness_key="flood")``, then two
``flight-sold-out`` rollbacks at once, one with the flood's key and one with
its own key ("other"); the same pair first on the idle queue. Priority keys are
left at the default, so only fairness differs between the two. Prints one JSON
object: each rollback's time from the start call to its close, and its unwind
(booking failure → close), idle and behind the flood, and loaded ÷ idle. It
also writes it to ``bench/results/fairness.json`` and renders docs/benchmarks.md
again, whose fairness section is made from that file (``--no-write``: print only).

A prototype measurement in the benchmark only: nothing here is shipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client
from temporalio.common import Priority

from bench.harness import bounded_gather, log
from bench.histories import unwind_ms
from bench.report import rerender
from bench.sides import request, settle
from bench.stack import ROOT, Stack
from bench.stats import pct
from trip.models import Mode, Scenario
from wiring.codec import data_converter
from wiring.start import new_workflow_id
from workflows.booking import BookingWorkflow

QUEUE = "bench-fairness"
KEYS = ("flood", "other")


async def start(client: Client, scenario: Scenario, key: str) -> Any:
    return await client.start_workflow(
        BookingWorkflow.run,
        request(Mode.PARALLEL, scenario),
        id=new_workflow_id(),
        task_queue=QUEUE,
        priority=Priority(fairness_key=key),
    )


async def rollback(client: Client, key: str) -> tuple[float, float]:
    began = time.perf_counter()
    handle = await start(client, Scenario.FLIGHT_SOLD_OUT, key)
    await settle(handle)
    return (time.perf_counter() - began) * 1000, await unwind_ms(client, handle.id)


async def pair(client: Client) -> dict[str, tuple[float, float]]:
    done = await asyncio.gather(*(rollback(client, key) for key in KEYS))
    return dict(zip(KEYS, done, strict=True))


async def measure(backlog: int, rounds: int, idle_runs: int) -> dict[str, Any]:
    stack = Stack()
    try:
        stack.start_temporal(extra_flags=("--dynamic-config-value", "matching.enableFairness=true"))
        stack.start_providers(None)
        stack.start_worker("worker", QUEUE)
        client = await Client.connect(stack.temporal_address, data_converter=data_converter())
        for _ in range(3):
            await asyncio.wait_for(settle(await start(client, Scenario.HAPPY, "flood")), 60)  # warm
        idle: dict[str, list[tuple[float, float]]] = {k: [] for k in KEYS}
        loaded: dict[str, list[tuple[float, float]]] = {k: [] for k in KEYS}
        open_at_start = []
        for round_ in range(rounds):
            for _ in range(idle_runs):
                for key, figures in (await pair(client)).items():
                    idle[key].append(figures)
            handles = await bounded_gather(200, [start(client, Scenario.HAPPY, "flood") for _ in range(backlog)])
            results = [asyncio.ensure_future(settle(h)) for h in handles]
            open_at_start.append(sum(not r.done() for r in results))
            for key, figures in (await pair(client)).items():
                loaded[key].append(figures)
            await asyncio.gather(*results)
            log(f"fairness round {round_ + 1}: { ({k: [round(x) for x in v[-1]] for k, v in loaded.items()}) }")
    finally:
        stack.stop()
    out: dict[str, Any] = {"backlog": backlog, "backlog_open_at_start": open_at_start}
    for key in KEYS:
        idle_start, idle_unwind = pct([x[0] for x in idle[key]], 0.5), pct([x[1] for x in idle[key]], 0.5)
        loaded_start, loaded_unwind = pct([x[0] for x in loaded[key]], 0.5), pct([x[1] for x in loaded[key]], 0.5)
        out[key] = {
            "idle_p50_ms": idle_start,
            "loaded_ms": [x[0] for x in loaded[key]],
            "ratio": loaded_start / idle_start,
            "idle_unwind_p50_ms": idle_unwind,
            "unwind_ms": [x[1] for x in loaded[key]],
            "unwind_ratio": loaded_unwind / idle_unwind,
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="Rollbacks behind a flood of bookings, with fairness keys.")
    parser.add_argument("--backlog", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle-runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print the figures only; leave the files alone")
    args = parser.parse_args()
    found = asyncio.run(measure(args.backlog, args.rounds, args.idle_runs))
    found = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "idle_runs": args.idle_runs,
        **found,
    }
    print(json.dumps(found))
    if not args.no_write:
        (ROOT / "bench" / "results" / "fairness.json").write_text(json.dumps(found) + "\n")
        if (ROOT / "bench" / "results" / "latest.json").exists():
            for written in rerender(ROOT):
                log(f"wrote {written.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
