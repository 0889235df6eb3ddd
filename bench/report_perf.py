# ruff: noqa: E501, RUF001 -- markdown templates: long table rows and the multiplication sign are the output
"""The sections of docs/benchmarks.md about performance against the physical floor: realistic
provider latency against each design's limit, our overhead above the same-shape no-op
floor (with the profile's findings), and CPU per saga with each lever's effect.

Pure functions of the results object; a results file from before these phases
existed renders a line saying so instead of a table.
"""

from __future__ import annotations

from typing import Any

from bench.report_phases import num
from bench.sides import BASELINE, FLOOR_NOOP, OURS, SEQUENTIAL

NOT_MEASURED = (
    "not measured in the run these figures come from (it predates the phase); the next `make bench` fills it in."
)

#: What ``python -m bench.profile`` showed (py-spy ``--gil`` on the worker and the provider
#: service, 100 parallel sagas in flight, 15 s each). Written by hand from its output:
#: a profile is read, not averaged.
PROFILE_FINDINGS = """### Where the overhead goes (py-spy, and the histories)

**Saga by saga.** In a quick run on 2026-12-06 (load average 4 to 9 on 2 cores, other jobs running), ours took 74.9 ms
p50 at zero provider latency against 55.6 ms for the same-shape no-op floor. Their histories (server clock) split the
difference: 18 ms more with an activity in flight (32 against 14 ms: the three provider calls, which the floor's
no-op activities do not make) and 10 ms more inside workflow tasks (51 against 40 ms: a larger first task with the
search attributes, memo and summaries, the status upsert and the details at the end). Under realistic provider latency
the same ~55 to 65 ms sits on top of the slowest provider's answer, saga after saga: a fixed cost, not one that grows
with the providers. Four quick runs that day put ours 19.1, 19.3, 2.7 and 26.6 ms above the floor (6 to 10 sagas a
side, load average 4 to 20): the target of 10 ms is missed by about 10 ms, and only a quiet machine and the full run's
60 sagas a side will say by how much exactly.

**Inside the processes.** `python -m bench.profile` keeps 100 sagas in flight and samples the worker and the provider
service with py-spy (`--gil`: the thread running Python). Worker CPU per saga was 24 to 28 ms for ours and 28 ms for
the seed-style baseline's worker, the provider service about 4 ms, the dev server 36 to 43 ms; these absolute figures
moved by 15 % between runs with the machine's load, the shares below much less. Ours, the worker's Python time:

| area (worker, ours) | share | what it is |
|---|---:|---|
| the SDK's bridge to its Rust core, and the thread hand-off | 23 to 32 % | polling and completing activations and activity tasks, and `ThreadPoolExecutor.submit` (5 to 10 %): each activation runs in a thread so that a deadlock can be detected. Per task, the same for any design |
| the HTTP client (httpx, httpcore, anyio) | 18 to 24 % | three provider calls per saga, about 1.5 to 2 ms of CPU each, all on the worker's one event loop; before the cut below, 3 points more were the OpenTelemetry httpx wrapper, installed with nothing exported |
| the SDK's workflow sandbox | 15 to 25 % | entering the sandbox on every activation and, through `get_serialization_context`, once for every payload the codec visits (`_Instance._run_code`, an `exec` per call, 5 to 10 % alone) |
| the asyncio event loop | 14 to 17 % | |
| payload conversion (pydantic) and the codec (AES-GCM) | 2 to 4 % each | encryption is not where the time goes |
| our workflow code, our activities, the metrics interceptor | under 2 % together | the saga itself is negligible |

The provider service: its SQLite ledger 22 to 51 %, aiohttp 22 to 35 %, its routes and pydantic validation 15 to
25 %: 1.3 to 2 ms per call on a fresh ledger. **On the ledger a long run leaves behind it is far more**: the full run
above reports a median handling time of 11 ms per call, because the stand-in provider answers a reservation by
counting the bookings already held on that day (`Ledger._available`, the top function of its profile), and every
saga of the benchmark books the same trip. The overhead and realistic phases therefore run on ledgers of their own;
a running count per day in the ledger would remove the cost for every phase.

**Cut**, keeping each step its own activity with its attempts in the Web UI, the codec, the metrics and the traces:

- `sniffio` is installed: httpcore asks `import sniffio` several times per request, and without the package every ask
  was a failed import that searched `sys.path` (3 % of the worker's Python time; 0.2 ms of CPU per call, client and
  server in one process, 0.91 → 0.72 ms);
- the tracing interceptor and the httpx instrumentation are installed only when spans are exported
  (`wiring.tracing.client_interceptors`). With nothing exported they still put a trace-context header on every
  activity (a payload the codec then visits, in the sandbox, and encrypts) and wrapped every provider call, for spans
  that went nowhere. Same run, A B B A at 100 in flight: a worker that exports cost 4.7 and 6.3 ms more worker CPU
  per saga than the shipped one in two quick runs (the levers table below has this run's figure). With `OTEL_EXPORTER_OTLP_ENDPOINT` set,
  traces are exactly as before.

**Not cut, and why** (what the remaining ~20 ms would take):

- *the HTTP client*: an aiohttp client costs a fraction of httpx's CPU per call (one POST to a local aiohttp server,
  client and server in one process: 0.23 to 0.27 ms of CPU with aiohttp's client, 0.7 to 1.0 ms with httpx and
  sniffio; three calls a saga, on the worker's one event loop), the largest cut left in our own code; but the
  activities' error mapping, their tests, the shared-client optimisation and the tracing instrumentation are
  written against httpx, and the reservation path is changing this round (asynchronous confirmations): a change of
  client for a later round, measured first;
- *the provider service*: pydantic validation of every body and the ledger's count per day (above);
- *the search attributes*: starting without them (so no upsert either) is measured in the levers table (two quick
  runs disagreed even on its sign, −7 and +1 ms of server CPU per saga: it is within this machine's noise at 15 sagas
  a half), and the web list, the gauges and the attention page read `BookingStatus`, so they stay;
- *the sandbox, the bridge and the thread hand-off*: the SDK's own. The unsandboxed runner would save most of the
  sandbox's share, at the price of the guard against non-deterministic workflow code."""


def realistic_section(r: dict[str, Any]) -> str:
    head = "## Realistic provider latency, against each design's physical limit"
    if "realistic" not in r:
        return f"{head}\n\n`latency_vs_limit_realistic` (target ≤ 1.10): {NOT_MEASURED}"
    real, ratios = r["realistic"], r["ratios"]
    lat, lim = real["latency_ms"], real["limits"]
    labels = {OURS: "ours (parallel)", SEQUENTIAL: "ours, sequential", BASELINE: "baseline (seed-style)"}
    shape = {OURS: "slowest of the three", SEQUENTIAL: "sum of the three", BASELINE: "sum of the three"}
    rows = [
        f"| {labels[s]} | {num(lat[s]['p50'], 0)} | {num(lat[s]['p95'], 0)} | {shape[s]}: {num(lim[s]['providers_p50_ms'], 0)} | "
        f"{num(lim[s]['floor_p50_ms'], 0)} | {num(lim[s]['limit_ms'], 0)} | {lat[s]['p50'] / lim[s]['limit_ms']:.3f} |"
        for s in (OURS, SEQUENTIAL, BASELINE)
    ]
    return f"""{head}

The provider service restarted with `--latency-profile realistic`: every call waits a seeded log-normal draw around
its provider's median (car 120 ms, hotel 180 ms, flight 350 ms; p95 about 1.6 × the median). {r["plan"]["realistic_runs"]}
happy sagas per side, one at a time, interleaved with the same-shape no-op floors (A B C D E E D C B A). A design's
**limit** is what the providers allow it: the p50 over its sagas of the reservations' answer times as the provider
service measured them per booking (`GET /stats?booking_id=`), the slowest of the three for parallel booking and their
sum for sequential, plus the p50 of the workflow of its shape that does nothing else (`FloorNoop`, two workflow tasks
and three parallel no-op activities; `FloorNoopSequential`, the same one after another).

| design | p50 (ms) | p95 (ms) | providers' answers, p50 (ms) | no-op floor p50 (ms) | limit (ms) | p50 ÷ limit |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

`latency_vs_limit_realistic` = **{ratios["latency_vs_limit_realistic"]:.3f}** (target ≤ 1.10); ours ÷ the seed-style
baseline under the same latency: ×{ratios["latency_vs_seed_style_realistic"]:.2f}. Against providers that take
hundreds of milliseconds, what is left of our own overhead is a few percent of a saga; parallel booking is what
halves it. The p50 of {r["plan"]["realistic_runs"]} sagas moves with the draws: read the ratio to a tenth."""


def overhead_section(r: dict[str, Any]) -> str:
    head = "## Our overhead at zero provider latency"
    if "overhead" not in r:
        return f"{head}\n\n`overhead_ms_vs_floor` (target ≤ 10 ms): {NOT_MEASURED}\n\n{PROFILE_FINDINGS}"
    o = r["overhead"]
    lat, split = o["latency_ms"], o["history"]

    def row(label: str, key: str) -> str:
        return f"| {label} | {num(split[OURS][key])} | {num(split[FLOOR_NOOP][key])} |"

    return f"""{head}

Ours against `FloorNoop` (our saga's shape with activities that do nothing, on the baseline's worker with the same
converter and codec), {r["plan"]["overhead_runs"]} happy sagas each, interleaved A B B A, while the providers answer at once.

| | ours | same-shape no-op floor |
|---|---:|---:|
| p50, start call to result (ms) | {num(lat[OURS]["p50"])} | {num(lat[FLOOR_NOOP]["p50"])} |
| p95 (ms) | {num(lat[OURS]["p95"])} | {num(lat[FLOOR_NOOP]["p95"])} |
{row("server: first to last history event (ms, last 5)", "history_ms")}
{row("workflow tasks", "workflow_tasks")}
{row("time in workflow tasks (ms)", "workflow_task_ms")}
{row("time with an activity in flight (ms)", "activities_in_flight_ms")}

`overhead_ms_vs_floor` = **{o["overhead_ms"]:.1f} ms** (target ≤ 10 ms): ours p50 − the floor's p50.

{PROFILE_FINDINGS}"""


def cpu_section(r: dict[str, Any]) -> str:
    ratios, cost = r["ratios"], r["cost_per_saga"]
    c_hi = r["throughput_concurrency"]
    head = f"## CPU per saga at {c_hi} in flight, and each lever's effect"
    # Runs from before these keys had the same figures as ``*_cpu_per_saga``.
    worker = ratios.get("worker_cpu_ratio", ratios["worker_cpu_per_saga"])
    server = ratios.get("server_cpu_ratio", ratios["server_cpu_per_saga"])
    text = f"""{head}

`/proc` user + system time of each process over the {c_hi}-in-flight throughput phase, divided by its sagas:
ours {num(cost[OURS]["worker_cpu_ms"])} ms worker and {num(cost[OURS]["server_cpu_ms"])} ms server, the seed-style
baseline {num(cost[BASELINE]["worker_cpu_ms"])} and {num(cost[BASELINE]["server_cpu_ms"])} ms.
`worker_cpu_ratio` = **{worker:.3f}** (target ≤ 0.5), `server_cpu_ratio` = **{server:.3f}** (target ≤ 0.7)."""
    levers = r.get("levers") or {}
    if not levers:
        return text + "\n\nThe levers are measured by `make bench` (or `python -m bench --quick --levers`)."
    labels = {
        "fewer_workflow_tasks": "fewer workflow tasks: parallel (with) against sequential mode (without), same worker",
        "no_search_attributes": "fewer history events and visibility writes: started without search attributes, so no upsert (with), against shipped (without)",
        "no_tracing_interceptors": "interceptors that cost nothing when nothing is exported: shipped (with) against a worker exporting spans (without)",
    }
    rows = [
        f"| {labels.get(name, name)} | {num(v['with']['worker_cpu_ms_per_saga'])} / {num(v['without']['worker_cpu_ms_per_saga'])} | "
        f"{v['worker_cpu_ms_effect']:+.1f} | {num(v['with']['server_cpu_ms_per_saga'])} / {num(v['without']['server_cpu_ms_per_saga'])} | "
        f"{v['server_cpu_ms_effect']:+.1f} | {'yes' if v['shipped'] else 'no'} |"
        for name, v in levers.items()
    ]
    return f"""{text}

Each lever against its absence, same run, {c_hi} in flight, A B B A halves (`bench/levers.py`; the shared HTTP client
and the sandbox are in the optimisations table below):

| lever | worker CPU per saga, with / without (ms) | effect (ms) | server CPU per saga, with / without (ms) | effect (ms) | shipped |
|---|---:|---:|---:|---:|---|
{chr(10).join(rows)}

Per saga, ours already does the least the design allows on the server's side: two or three workflow tasks and one
round of three activities, each its own activity with its attempts in the Web UI. What is left is per task, in the
SDK (the sandbox, the bridge, the thread hand-off) and the server (a task's dispatch and its history writes), and a
design that keeps one activity per step cannot halve it: the targets need about half the tasks or half the cost per
task."""
