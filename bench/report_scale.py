# ruff: noqa: E501, RUF001 -- markdown templates: long table rows and the multiplication sign are the output
"""The sections of docs/benchmarks.md on scale with capped workers and on the undo queue.

Pure functions of the results object, like ``bench.report_phases``; a results
object from before these experiments renders without them.
"""

from __future__ import annotations

from typing import Any

from bench.report_phases import num


def _cores(load: dict[str, float]) -> str:
    names = sorted(k.removesuffix("_cpu_cores") for k in load if k.endswith("_cpu_cores"))
    return ", ".join(f"{n.replace('_', ' ')} {load[n + '_cpu_cores']:.2f}" for n in names)


def _worker_ms(load: dict[str, float]) -> float:
    return sum(v for k, v in load.items() if k.startswith("worker_") and k.endswith("_cpu_ms_per_saga"))


def capped_scale_section(r: dict[str, Any]) -> str:
    if "scale_capped" not in r:
        return ""
    c, scale = r["scale_capped"], r["scale"]
    one, two = c["one_worker"], c["two_workers"]
    knee = sorted(c["knee"].items(), key=lambda item: int(item[0]))
    per_worker = {n: figures["sagas_per_s"] / int(n) for n, figures in knee}
    rows = "\n".join(
        f"| {n} | {num(f['sagas_per_s'])} | {num(per_worker[n])} | {num(f['p50_ms'], 0)} | {num(_worker_ms(f))} | "
        f"{f['server_cpu_cores']:.2f} |"
        for n, f in knee
    )
    return f"""### Scale on capped cores

Each worker process capped to **{c["cores_per_worker"]} of a core** (`bench.cpucap`, here by **{c["method"]}**;
the server, the providers and the benchmark uncapped), so that the workers, not the server, are the bottleneck;
{c["concurrency"]} sagas in flight on a queue of its own, one capped worker then two then one (A B B A), load average
{c["load_average"][0]:.1f} at its end.

`scale_2_workers_capped` = **{c["ratio"]:.2f}** (target ≥ 1.8), against {scale["ratio"]:.2f} uncapped above.

| | sagas/s | p50 latency (ms) | CPU cores used, per process |
|---|---:|---:|---|
| 1 capped worker | {num(one["sagas_per_s"])} | {num(one["p50_ms"], 0)} | {_cores(one)} |
| 2 capped workers | {num(two["sagas_per_s"])} | {num(two["p50_ms"], 0)} | {_cores(two)} |

Then 1, 2, 3… capped workers in turn (one pass each; 1 and 2 are the A B B A runs above): throughput grows with the workers until the server, which every
saga's history goes through, runs out of CPU; past that knee another worker adds nothing.

| capped workers | sagas/s | per worker | p50 latency (ms) | worker CPU per saga, all workers (ms) | server CPU (cores) |
|---:|---:|---:|---:|---:|---:|
{rows}

![throughput against capped workers, and the server's CPU](benchmarks-knee.png)"""


def undo_queue_section(r: dict[str, Any]) -> str:
    b, ratios = r["rollback_under_backlog"], r["ratios"]
    if "rollback_under_backlog_from_start_call" not in ratios:
        return ""
    return f"""### The undo queue

Undos run on a task queue of their own, `<queue>-undo` (`workflows.policies.undo_task_queue`), polled by a second
Worker in every booking worker process with slots of its own (`WorkerTuning.max_concurrent_undos`), at priority 1.
A rollback's undos therefore wait for no booking's activity slot, and no booking's activity task is ahead of them in
the server's queue. `rollback_under_backlog` (the target, ≤ 2.0) is now taken **from the moment the rollback starts**
(its booking failure, on the server's clock) to consistent, loaded ÷ idle: **{ratios["rollback_under_backlog"]:.1f}**
shipped, {b["escalated"]["unwind_ratio"]:.1f} with the workflow raised to priority 1 on its failure (the prototype
above), {b["default"]["unwind_ratio"]:.1f} with the undos on their queue at the bookings' priority.
The rows above read the same variants from the start call; a booking started at priority 1 throughout (the last
row) unwound in ×{b["started_high"]["unwind_ratio"]:.1f} its idle time, so what the unwind still waits for behind the
backlog is mostly not the server's queues, which every priority above orders, but the worker process itself: its
event loop and CPU, busy with the backlog's sagas.

Of the fairness keys the one that fits is **per channel** (the web form, the CLI, a bulk operation): a flood comes
from one source (a batch, a sale, a retrying client), and a key per channel keeps it from starving the bookings and
rollbacks of the others. A key per traveller gives a flood of a thousand travellers a thousand keys of one task each,
which the server serves first-in first-out as before; there are no tenants here. It is not shipped: it needs
`matching.enableFairness` on the cluster and the key set at every start site, and the run below ("Fairness keys
against a flood", one key for the flood and another for the rollback, as two channels would be) shows the server's
part only."""
