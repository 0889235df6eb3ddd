"""``python -m bench.profile [--seconds S] [--inflight N] [--side ours|baseline]``: where a saga's CPU goes.

Starts its own dev server, provider service and both workers (as ``python -m
bench`` does), keeps ``N`` happy sagas of one side in flight, and samples the
worker and the provider service with py-spy meanwhile. It prints, per process,
the CPU ``/proc`` counted against the samples py-spy saw in Python code (the
rest is the SDK's Rust core and native libraries), then where the Python
samples went: by area (the SDK's workflow machinery, conversion and the codec,
HTTP, pydantic, tracing and metrics, our code, the event loop) and by function.
docs/benchmarks.md ("Where the overhead goes") is written from its output.
Needs ptrace rights over the processes it starts (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

from temporalio.client import Client

from bench.harness import bounded_gather
from bench.sides import BASELINE, OURS, QUEUES, WORKERS, one_saga
from bench.stack import Stack, cpu_seconds
from wiring.codec import data_converter

#: Where a sample's time is charged: the first of these found in its stack, from
#: the leaf up. The order matters: the codec calls cryptography, a workflow task
#: calls the converter.
AREAS = (
    ("codec (wiring/codec.py, AES-GCM)", ("wiring/codec.py", "cryptography/")),
    ("tracing (opentelemetry)", ("opentelemetry/",)),
    ("metrics interceptor (wiring/metrics.py)", ("wiring/metrics.py",)),
    (
        "payload conversion (temporalio/converter, pydantic)",
        ("temporalio/converter.py", "temporalio/contrib/pydantic", "pydantic"),
    ),
    ("HTTP client (httpx, httpcore)", ("httpx/", "httpcore/", "h11/")),
    ("HTTP server (aiohttp)", ("aiohttp/",)),
    ("ledger (sqlite)", ("providers/ledger.py", "providers/storage.py", "sqlite3")),
    ("provider routes (providers/)", ("providers/",)),
    ("our activities (activities/)", ("activities/",)),
    ("workflow sandbox", ("workflow_sandbox/",)),
    ("our workflow code (workflows/, saga/, trip/)", ("workflows/", "saga/", "trip/")),
    ("SDK workflow instance", ("temporalio/worker/_workflow_instance.py", "temporalio/worker/_workflow.py")),
    ("SDK activity worker", ("temporalio/worker/_activity.py",)),
    ("SDK other", ("temporalio/",)),
    ("protobuf", ("google/protobuf",)),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
)


def area_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for area, markers in AREAS:
            if any(m in frame for m in markers):
                return area
    return "other"


def summarise(raw: Path, cpu_s: float, rate: int, top: int) -> str:
    areas: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        areas[area_of(stack)] += n
        leaves[stack.split(";")[-1]] += n
    seen_s = total / rate
    lines = [f"  /proc CPU {cpu_s:.2f} s; py-spy saw {seen_s:.2f} s holding the GIL ({seen_s / cpu_s:.0%})"]
    lines += [f"  {n / total:6.1%}  {area}" for area, n in areas.most_common()]
    lines += ["  top functions (self):"]
    lines += [f"  {n / total:6.1%}  {leaf}" for leaf, n in leaves.most_common(top)]
    return "\n".join(lines)


async def profile(seconds: float, inflight: int, side: str, rate: int, top: int) -> None:
    stack = Stack()
    try:
        stack.start_temporal()
        stack.start_providers(None)
        stack.start_seed_worker(WORKERS[BASELINE], QUEUES[BASELINE])
        stack.start_worker(WORKERS[OURS], QUEUES[OURS])
        client = await Client.connect(stack.temporal_address, data_converter=data_converter())
        for _ in range(5):
            await asyncio.wait_for(one_saga(client, side), 60)
        pids = {name: stack.pid(name) for name in ("providers", "temporal")} | {"worker": stack.pid(WORKERS[side])}
        spies = {
            name: (
                await asyncio.create_subprocess_exec(
                    str(Path(sys.executable).parent / "py-spy"),
                    *("record", "--pid", str(pids[name]), "--duration", str(int(seconds))),
                    *("--rate", str(rate), "--format", "raw", "--nonblocking", "--gil"),
                    *("--output", str(stack.workdir / f"{name}.raw")),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                ),
                stack.workdir / f"{name}.raw",
            )
            for name in ("worker", "providers")
        }
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started, sagas = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            await bounded_gather(inflight, [one_saga(client, side) for _ in range(inflight)])
            sagas += inflight
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        for proc, _ in spies.values():
            await proc.wait()
        print(f"{side}: {sagas} sagas, {inflight} in flight, {time.perf_counter() - started:.1f} s")
        for name, seconds_ in cpu.items():
            print(f"{name}: {seconds_ * 1000 / sagas:.1f} ms CPU per saga")
        for name, (_, raw) in spies.items():
            print(f"{name}:")
            print(summarise(raw, cpu[name], rate, top))
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Profile the worker and the provider service under load.")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--inflight", type=int, default=100)
    parser.add_argument("--side", choices=(OURS, BASELINE), default=OURS)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    asyncio.run(profile(args.seconds, args.inflight, args.side, args.rate, args.top))


if __name__ == "__main__":
    main()
