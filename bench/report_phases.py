# ruff: noqa: E501, RUF001 -- markdown templates: long table rows and the multiplication sign are the output
"""The sections of docs/benchmarks.md about one experiment each: the floor, why ours sits
above it, scale-out, rollbacks behind a backlog, the form's submit, the optimisations.

Each is a pure function of the results object (``bench/results/latest.json``),
so ``python -m bench.report`` can render them again without measuring.
"""

from __future__ import annotations

from typing import Any

from bench.sides import BASELINE, FLOOR_EMPTY, FLOOR_LOCAL, OURS, SEQUENTIAL


def num(value: float, digits: int = 1) -> str:
    """A figure as the report prints it: fixed-point, one decimal unless told."""
    return f"{value:.{digits}f}"


def _cores(load: dict[str, float]) -> str:
    names = sorted(k.removesuffix("_cpu_cores") for k in load if k.endswith("_cpu_cores"))
    return ", ".join(f"{n.replace('_', ' ')} {load[n + '_cpu_cores']:.2f}" for n in names)


def _verdict(name: str, empty: float, local: float, target: float, *, at_most: bool) -> str:
    """Whether a target lies beyond the floor: the empty workflow (no design beats it) and
    the local-activity trip (the best design that still calls the providers)."""
    beyond = (lambda x: x > target) if at_most else (lambda x: x < target)
    sign = "≤" if at_most else "≥"
    if beyond(empty):
        return (
            f"**{name} {sign} {target:.2f}: unreachable on this machine.** A workflow that does nothing gets ×{empty:.2f}; "
            f"no workflow, with or without activities, reaches the target here."
        )
    if beyond(local):
        return (
            f"**{name} {sign} {target:.2f}: unreachable for a design that calls the providers.** The empty workflow gets "
            f"×{empty:.2f}, but the whole trip in one workflow task (three local activities) gets ×{local:.2f}: the "
            f"three provider calls, and the worker CPU they take, keep it beyond the target."
        )
    return (
        f"**{name} {sign} {target:.2f}: reachable only with local activities** (×{local:.2f}; the empty workflow "
        f"×{empty:.2f}): a product decision, since local activities give up the per-attempt activity events, the "
        f"server-side retries and the activity priority the shipped design relies on."
    )


def floor_section(r: dict[str, Any]) -> str:
    f, ratios = r["floor"], r["ratios"]
    lat, ttc, load, tasks = f["latency_ms"], f["time_to_consistent_ms"], f["throughput"], f["workflow_tasks"]
    c = f["concurrency"]
    base_rate = load[BASELINE]["sagas_per_s"]
    sides = (BASELINE, OURS, FLOOR_LOCAL, FLOOR_EMPTY)

    def row(label: str, values: list[str]) -> str:
        return f"| {label} | {' | '.join(values)} |"

    def rate(side: str, key: str = "sagas_per_s", digits: int = 1) -> str:
        return num(load[side][key], digits) if side in load else "—"

    empty_ttc, base_ttc = lat[FLOOR_EMPTY]["p50"], ttc[BASELINE]["p50"]
    table = [
        "| | baseline | ours | floor: local activities | floor: empty |",
        "|---|---:|---:|---:|---:|",
        row("p50 success latency (ms)", [num(lat[s]["p50"]) for s in sides]),
        row(
            "÷ baseline (target ≤ 0.25)",
            ["1", *(f"{lat[s]['p50'] / lat[BASELINE]['p50']:.3f}" for s in sides[1:])],
        ),
        row(
            "p50 time to consistent, flight-sold-out (ms); empty: its latency",
            [*(num(ttc[s]["p50"]) for s in sides[:3]), num(empty_ttc)],
        ),
        row(
            "÷ baseline (target ≤ 0.30)",
            ["1", *(f"{ttc[s]['p50'] / ttc[BASELINE]['p50']:.3f}" for s in sides[1:3]), f"{empty_ttc / base_ttc:.3f}"],
        ),
        row(f"throughput at {c} in flight (sagas/s)", [rate(s) for s in sides]),
        row(
            "÷ baseline (target ≥ 2.0)",
            ["1", "—", *(f"{load[s]['sagas_per_s'] / base_rate:.3f}" for s in sides[2:])],
        ),
        row(f"server CPU per saga at {c} in flight (ms)", [rate(s, "server_cpu_ms_per_saga") for s in sides]),
        row(f"worker CPU per saga at {c} in flight (ms)", [rate(s, "worker_cpu_ms_per_saga") for s in sides]),
        row("workflow tasks per saga (last 5)", [num(tasks[s]) for s in sides]),
    ]
    c_hi = r["throughput_concurrency"]
    sandbox = r["optimisations"].get("shared_module_sandbox")
    sandbox_note = (
        f"our worker's shared-module sandbox took ×{sandbox['ratio_worker_cpu']:.2f} of the strict sandbox's worker "
        "CPU in the optimisations table below, far from the factor these verdicts would need."
        if sandbox
        else "our worker's shared-module sandbox costs less worker CPU (measured in the full run)."
    )
    return f"""## The floor: what no design can beat here

The same run has a floor phase: the baseline, ours and two floor workflows ([`bench/floor.py`](../bench/floor.py)) on
the baseline's worker (SDK defaults), interleaved (A B C D D C B A; throughput in A B C C B A halves). **Empty** starts
and returns: one workflow task, nothing else. **Local activities** makes the trip's three provider calls as local
activities, all at once, and on a failure its three undos the same way: the whole saga in one workflow task, the best
a design could do while still calling the providers. {r["plan"]["latency_runs"]} happy and
{r["plan"]["consistent_runs"]} `flight-sold-out` runs per side, one at a time; {f["reservations_left"]} of the local
rollbacks left a reservation held.

{chr(10).join(table)}

Ours against the baseline in this phase: ×{ratios["floor_ours_p50_latency"]:.2f} (×{ratios["p50_latency"]:.2f} in the
first table). The empty workflow costs the server {
        num(load[FLOOR_EMPTY]["server_cpu_ms_per_saga"])
    } ms of CPU each: with
all {f["cores"]} cores to itself the server could run at most {num(f["server_bound_empty_per_s"], 0)} empty workflows a
second here, the throughput floor of any saga design on this machine. Both floor workflows run on the baseline's
worker (strict sandbox, SDK defaults); {sandbox_note}

- {_verdict("p50_latency", ratios["floor_empty_p50_latency"], ratios["floor_local_p50_latency"], 0.25, at_most=True)}
- {
        _verdict(
            "p50_time_to_consistent",
            ratios["floor_empty_p50_time_to_consistent"],
            ratios["floor_local_p50_time_to_consistent"],
            0.30,
            at_most=True,
        )
    }
- {
        _verdict(
            f"throughput_{c_hi}",
            ratios[f"floor_empty_throughput_{c}"],
            ratios[f"floor_local_throughput_{c}"],
            2.0,
            at_most=False,
        )
    }

A single phase on a shared machine moves by a tenth or more from run to run; a ratio within that of its target is not
a verdict either way."""


def rollback_section(r: dict[str, Any]) -> str:
    b, ratios = r["rollback_under_backlog"], r["ratios"]
    labels = {
        "priority": "undos at priority 1 (shipped)",
        "default": "undos at 3, as the bookings",
        "escalated": "shipped + workflow raised to 1 on the failure (prototype)",
        "started_high": "whole workflow started at priority 1",
    }
    rows = []
    for name, label in labels.items():
        v = b[name]
        loaded = ", ".join(num(x, 0) for x in v["loaded_ms"])
        unwind = ", ".join(num(x, 0) for x in v["unwind_ms"])
        rows.append(
            f"| {label} | {num(v['idle_p50_ms'], 0)} | {loaded} | {v['ratio']:.1f} | "
            f"{num(v['idle_unwind_p50_ms'], 0)} | {unwind} | {v['unwind_ratio']:.1f} |"
        )
    return f"""## Rollbacks behind a backlog (Priority)

Undo activities are scheduled with `Priority(priority_key=1)` (`workflows.booking.UNDO_PRIORITY_KEY`; bookings keep
the default, 3). Four `flight-sold-out` rollbacks are started together, on an idle queue (3 sets per round) and
right after {b["backlog"]} new bookings were started on the same queue ({b["backlog_open_at_start"]} of them still
open at that moment), {r["plan"]["backlog_rounds"]} round(s). *From start* is the start call to the failed close;
*unwind* is the booking failure to the close, on the server's clock.

| rollback | from start, idle p50 (ms) | from start, behind the backlog (ms) | loaded ÷ idle | unwind, idle p50 (ms) | unwind, behind the backlog (ms) | unwind loaded ÷ idle |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

With {r["plan"]["backlog_rounds"]} loaded sample(s) per row (the p50 of two is the larger) and the worker saturated,
the loaded figures spread by up to ten times within a row: read them as orders of magnitude.

From the start call the shipped rollback took ×{b["priority"]["ratio"]:.1f} its idle time;
`rollback_unwind_under_backlog` = **{ratios["rollback_unwind_under_backlog"]:.1f}** for the unwind alone (shipped),
{ratios["rollback_unwind_under_backlog_without_priority"]:.1f} with the undos at 3 and
{ratios["rollback_unwind_under_backlog_escalated"]:.1f} with the workflow raised on the failure.

From the start call the target cannot be met by any priority a rollback gets *after* it fails: its start, its first
workflow task and its three booking activities queue first-in first-out behind the backlog's at the same priority,
and the figure is mostly that wait. A booking started at priority 1 (last row) skips the queue: behind the backlog it
took {num(b["started_high"]["loaded_p50_ms"], 0)} ms against {num(b["priority"]["loaded_p50_ms"], 0)} ms shipped
(×{b["priority"]["loaded_p50_ms"] / b["started_high"]["loaded_p50_ms"]:.0f} sooner), yet still
×{b["started_high"]["ratio"]:.0f} its idle time, and a booking cannot know at its start that it will roll back. Even
at priority 1 throughout, its unwind took {num(b["started_high"]["unwind_p50_ms"], 0)} ms behind the backlog against
{num(b["started_high"]["idle_unwind_p50_ms"], 0)} ms idle: with every one of its tasks ahead of the whole backlog in
the server's queues, what remains is spent after dispatch, on a worker and a provider service busy with the backlog's
sagas (the worker's activity slots, 100 by default, and its event loop are first come, first served). Task-queue
priority orders the server's queues, not those. Raising the workflow on the failure (the third row) likewise does not
bring the unwind near 2× idle here.

What the server offers, read in its source
(temporalio/temporal, `service/history/api/updateworkflowoptions`, `service/matching/fairness.md`):

- **Raising a running workflow's priority**: `UpdateWorkflowExecutionOptions` with `workflow_execution_options.priority`
  (server ≥ 1.30, commit bcf3280 "Update Workflow/Activity priority"; the dev server here is 1.32). The history
  service stores the new priority on the execution and, when it changed, *reschedules the pending workflow task*, so
  a task already queued behind the backlog is re-queued at the new priority; later workflow tasks and activities
  without their own priority inherit it. The third row prototypes it from the outside (the benchmark watches the
  history and calls the API once the booking failure is recorded, which is later than shipped code would). To ship
  it, the activity that meets the failure (or the first undo, already at priority 1) would make the same call for its
  own workflow before returning, with a client and the `UpdateWorkflowExecutionOptions` permission in the worker.
- **Fairness keys** (`Priority(fairness_key=…)`, dynamic config `matching.enableFairness`, off by default on 1.32):
  within one priority level, tasks get a *pass* per fairness key, so a key with 1000 tasks queued does not delay a
  key with one. That stops one customer's (or one source's) flood from starving another's, but only if the flood
  shares a key: with a key per booking, 1000 bookings are 1000 keys of one task each and the order stays first-in
  first-out. Which key (traveller, tenant, channel) is a product decision; measured by `python -m bench.fairness`
  under "Fairness keys against a flood" below.
"""


def why_above_the_floor(r: dict[str, Any]) -> str:
    cost, ratios = r["cost_per_saga"], r["ratios"]
    c_hi = r["throughput_concurrency"]
    total_cpu = (cost[OURS]["worker_cpu_ms"] + cost[OURS]["server_cpu_ms"]) / (
        cost[BASELINE]["worker_cpu_ms"] + cost[BASELINE]["server_cpu_ms"]
    )
    return f"""### Why ours sits above the floor

Once the per-dispatch delay is gone (below), a saga's time is its workflow tasks: each one is a round trip from the
server to the worker and back, plus the workflow code, on CPUs shared by the server, the worker, the providers and
the benchmark. The baseline needs {num(cost[BASELINE]["workflow_tasks"])} workflow tasks and three activity round trips one
after another; ours needs {num(cost[OURS]["workflow_tasks"])} workflow tasks and one round of three activities at once
(more than 2 because the three completions rarely land inside one workflow task). With equal cost per task the best
ours can do is about 2/4 of the baseline's latency; below that a design needs the whole trip inside one workflow
task, i.e. local activities (measured above as the floor), which this project declined because it would lose the
per-attempt visibility in the Web UI that operators use. Ours also does more per task than
the seed-style workflow (it upserts the `BookingStatus` search attribute and publishes the step list as current
details on every change), which the baseline does not pay; that is why ours in sequential mode is no faster than the
baseline. Time to consistent after `flight-sold-out` has the same shape: the failure, the two undos (at once in
ours) and the close are separate workflow tasks.

Throughput is the same limit seen from the other side. Parallel booking shortens a saga more than it cheapens it:
at {c_hi} in flight ours cost {num(cost[OURS]["worker_cpu_ms"])} ms of worker CPU and {num(cost[OURS]["server_cpu_ms"])}
ms of server CPU per saga against the baseline's {num(cost[BASELINE]["worker_cpu_ms"])} and
{num(cost[BASELINE]["server_cpu_ms"])} ms (×{total_cpu:.2f} in all). Once the machine's CPU is the limit (on cores
shared with other jobs), sagas per second are the CPU this run gets over the CPU per saga, so the throughput ratio
tends to the inverse of that, ×{1 / total_cpu:.2f}, whatever the latency; measured here:
{", ".join(f"×{ratios[f'throughput_{c}']:.2f} at {c}" for c in r["throughput"])} in flight, moving with the other jobs'
load from one level to the next. ≥ 2.0 would need half the CPU per saga, i.e. half the workflow tasks and history writes."""


def scale_section(r: dict[str, Any]) -> str:
    scale, m = r["scale"], r["machine"]
    one, two = scale["one_worker"], scale["two_workers"]
    return f"""## Scale: one worker process against two

`scale_2_workers` = **{scale["ratio"]:.2f}** (target ≥ 1.6 where the server is not the bottleneck): parallel sagas,
{scale["concurrency"]} in flight, on one task queue served by one worker process, then two, then one (A B B A).

| | sagas/s | p50 latency (ms) | CPU cores used, per process |
|---|---:|---:|---|
| 1 worker | {num(one["sagas_per_s"])} | {num(one["p50_ms"], 0)} | {_cores(one)} |
| 2 workers | {num(two["sagas_per_s"])} | {num(two["p50_ms"], 0)} | {_cores(two)} |

On {m["cores"]} cores shared with other jobs a second worker process has no idle core to run on: the work moves from
one worker to two (their CPU per saga is split between them) and the sum of CPU over the server, the workers and the
benchmark stays near what the machine gives this run. Throughput scales with workers only where each has its own
cores and the server has headroom; this machine cannot show that."""


def form_section(r: dict[str, Any]) -> str:
    form, ratios = r["form_start_ms"], r["ratios"]
    return f"""## The form's submit: start, or Update-with-Start

Client side, on our worker, {r["plan"]["form_runs"]} runs each, interleaved:

| the submit waits for | p50 (ms) | p95 (ms) |
|---|---:|---:|
| the start to be accepted (what `POST /bookings` does) | {num(form["start"]["p50"])} | {num(form["start"]["p95"])} |
| Update-with-Start of `holds`: every booking held, or the unwind begun | {num(form["update_with_start"]["p50"])} | {num(form["update_with_start"]["p95"])} |
| start, then the workflow's result | {num(form["start_then_result"]["p50"])} | {num(form["start_then_result"]["p95"])} |

Update-with-Start took ×{ratios["form_update_with_start_vs_start_then_result"]:.2f} the time of start-then-result
here, and {num(form["update_with_start"]["p50"] / form["start"]["p50"], 0)}× the time of today's redirect. It cannot
answer sooner than the holds themselves, and the holds are the whole saga (once the last one is placed only the
close remains), so at best it matches start-then-result; it only makes the answer say more. The status page already
shows the outcome live, so the form keeps its immediate redirect (not shipped); `holds` (`trip.UPDATE_HOLDS`) is
there for a caller that wants the outcome in one call. Eager start is measured below and needs a worker in the
starting process, which the web app is not."""


def optimisations_section(r: dict[str, Any]) -> str:
    lat, ratios, opt = r["latency_ms"], r["ratios"], r["optimisations"]
    rows = [
        f"| parallel booking (the first table) | {num(lat[OURS]['p50'])} ms p50 | {num(lat[SEQUENTIAL]['p50'])} ms p50 in "
        f"sequential mode | ×{ratios['p50_latency_vs_sequential']:.2f} latency | yes, the default mode |",
        *(optimisation_rows(opt) if opt else []),
        "| sandbox pass-through of pydantic, httpx-free models and the saga core (`imports_passed_through`) | | | "
        "always on: without it every run would rebuild the pydantic models; not measured separately | yes |",
    ]
    return f"""## Optimisations, each measured in the same run

| optimisation | with | without | effect | shipped |
|---|---:|---:|---|---|
{chr(10).join(rows)}

These variants run late in the run, each against the shipped worker in A B B A halves; when the machine's load
moves during a phase the throughput column moves with it, so the shipped choices rest on the worker-CPU column."""


def optimisation_rows(opt: dict[str, Any]) -> list[str]:
    """One row per measured optimisation (full runs only)."""
    eager, http = opt["eager_start"], opt["shared_http_client"]
    wcache, sandbox, pollers = opt["workflow_cache"], opt["shared_module_sandbox"], opt["poller_autoscaling"]
    poller_mem, slots_mem = opt["poller_autoscaling_memory"], opt["activity_slots_200_memory"]
    n_var = poller_mem["shipped"]["sagas"]

    def rate_and_cpu(load: dict[str, float], unit: str) -> str:
        return f"{num(load['sagas_per_s'])} sagas/s, {num(load['worker_cpu_ms_per_saga'])} ms{unit}"

    def variant_row(label: str, v: dict[str, Any], with_: str, without: str, effect: str, shipped: str) -> str:
        return f"| {label} | {rate_and_cpu(v[with_], ' worker CPU per saga')} | {rate_and_cpu(v[without], '')} | {effect} | {shipped} |"

    return [
        f"| eager workflow start (`request_eager_start`), in-process worker, parallel (the least stable figure here: it moves a lot between runs) | {num(eager['eager_p50_ms'])} ms p50 | {num(eager['normal_p50_ms'])} ms p50 | ×{eager['ratio']:.2f} latency; {eager['eagerly_started']}/{eager['runs']} starts were eager | no: it needs a worker in the starting process, and the CLI and the web app start bookings for separate workers |",
        f"| one shared HTTP client per worker | {num(http['shared_p50_ms'], 2)} ms p50 per provider call | {num(http['per_call_p50_ms'], 2)} ms with a client per call | ×{http['ratio']:.2f} per call | yes |",
        variant_row(
            "workflow cache (`max_cached_workflows=1000` vs 0), parallel, 50 in flight",
            wcache,
            "shipped",
            "variant",
            f"×{wcache['ratio_throughput']:.2f} throughput, ×{wcache['ratio_worker_cpu']:.2f} worker CPU",
            "yes",
        ),
        variant_row(
            "workflow module imported once (shared-module sandbox) vs re-imported per run (`--strict-sandbox`, the SDK default), parallel, 50 in flight",
            sandbox,
            "shipped",
            "variant",
            f"×{sandbox['ratio_throughput']:.2f} throughput, ×{sandbox['ratio_worker_cpu']:.2f} worker CPU",
            "yes; the tests also run the workflow under the strict sandbox",
        ),
        variant_row(
            "poller autoscaling (`--poller-autoscaling`) vs the SDK's fixed five pollers, parallel, 50 in flight",
            pollers,
            "variant",
            "shipped",
            f"×{1 / pollers['ratio_throughput']:.2f} throughput, ×{1 / pollers['ratio_worker_cpu']:.2f} worker CPU; "
            f"peak RSS with {n_var} in flight {num(poller_mem['variant']['peak_rss_mib'])} MiB against "
            f"{num(poller_mem['shipped']['peak_rss_mib'])}",
            "no: on one worker and one dev server it buys little throughput for more open polls",
        ),
        f"| 200 activity slots instead of the SDK's 100 (`--max-concurrent-activities 200`), {n_var} slow sagas in flight | {num(slots_mem['variant']['peak_rss_mib'])} MiB peak RSS | {num(slots_mem['shipped']['peak_rss_mib'])} MiB | {slots_mem['delta_peak_rss_mib']:+.1f} MiB peak RSS | no: 100 |",
    ]


def fairness_section(f: dict[str, Any] | None, r: dict[str, Any]) -> str:
    """``python -m bench.fairness``'s own run (``bench/results/fairness.json``), beside the main run's backlog."""
    if f is None:
        return (
            "**Fairness keys against a flood**: not measured yet; `python -m bench.fairness` writes "
            "`bench/results/fairness.json` and renders this section from it."
        )
    when = f" on {f['date'][:10]}, finished at {f['date'][11:16]} UTC" if "date" in f else ""
    context = f", {f['context']}" if "context" in f else ""
    load = f", load average {f['load_average'][0]:.1f} at its end" if "load_average" in f else ""
    rounds = len(f["backlog_open_at_start"])
    rows = []
    for key, label in (("flood", 'the flood\'s ("flood")'), ("other", 'its own ("other")')):
        v = f[key]
        loaded = ", ".join(num(x, 0) for x in v["loaded_ms"])
        unwind = ", ".join(num(x, 0) for x in v["unwind_ms"])
        rows.append(
            f"| {label} | {num(v['idle_p50_ms'], 0)} | {loaded} | {v['ratio']:.1f} | "
            f"{num(v['idle_unwind_p50_ms'], 0)} | {unwind} | {v['unwind_ratio']:.1f} |"
        )
    sooner = sorted(a / b for a, b in zip(f["flood"]["loaded_ms"], f["other"]["loaded_ms"], strict=True))
    spread = f"×{sooner[0]:.0f}" if round(sooner[0]) == round(sooner[-1]) else f"×{sooner[0]:.0f}–{sooner[-1]:.0f}"
    started_high = r["rollback_under_backlog"]["started_high"]["ratio"]
    return f"""**Fairness keys against a flood** (could one flood of bookings be kept from starving another booking's rollback?
`python -m bench.fairness`, its own run{when}{context}{load}, raw figures in
[`bench/results/fairness.json`](../bench/results/fairness.json)). A dev server with `matching.enableFairness=true`,
our shipped worker and the provider service; {f["backlog"]} bookings started with `Priority(fairness_key="flood")`, then two
`flight-sold-out` rollbacks at once, one with the flood's key and one with its own, after {f.get("idle_runs", 3)} such pairs on the idle
queue, {rounds} round(s). Priority keys stay at the default, so only the fairness key differs.

| rollback's fairness key | from start, idle p50 (ms) | from start, behind the flood (ms) | loaded ÷ idle | unwind, idle p50 (ms) | unwind, behind the flood (ms) | unwind loaded ÷ idle |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

A rollback whose key differs from the flood's got through {spread} sooner from its start call (round by round),
without having to know at its start that it would roll back; in the main run a booking started at priority 1 behind
the backlog took ×{started_high:.0f} its idle time (`rollback_under_backlog_started_high`). It still took about
{f["other"]["ratio"]:.0f}× its idle time: with the fairness key the server's queues no longer make it wait, but the
worker and the provider service are still busy with the flood's {f["backlog"]} sagas. So fairness keys do stop one
flood from starving another's bookings, if the flood shares a key; shipping it needs `matching.enableFairness` on the
cluster (off by default on 1.32) and a product decision on the key (per traveller, tenant or channel: a key per
booking would give {f["backlog"]} keys of one task each, and first-in first-out again)."""
