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
PROFILE_FINDINGS = """### Where the overhead goes (py-spy)

`python -m bench.profile` keeps 100 sagas in flight and samples the worker and the provider service with py-spy
(`--gil`: only the thread running Python counts). On 2026-12-06, shared machine (load average about 3 on 2 cores),
before the cut below: the worker spent **24.3 ms of CPU per saga** (ours) against 27.9 ms for the seed-style
baseline's worker, the provider service 4.1 ms, the dev server 35.8 ms. The worker's Python time went to:

| area (worker, ours) | share of Python time | per saga (ms) | what it is |
|---|---:|---:|---|
| the SDK's workflow sandbox | 25 % | ~6 | entering and leaving the sandbox on every activation and, through `get_serialization_context`, once per payload the codec visits (`_Instance._run_code` alone is 10 %: a compiled `exec` per call) |
| the HTTP client (httpx, httpcore, anyio) | 24 % | ~6 | three provider calls per saga, about 2 ms of CPU each; 3 points of it were the OpenTelemetry httpx wrapper, installed even with nothing exported |
| the SDK's bridge to its Rust core | 15 % | ~4 | polling and completing workflow activations and activity tasks: per task, the same for any design |
| the asyncio event loop and thread hand-offs | 14 % + 5 % | ~5 | the SDK runs each activation in a thread pool (`ThreadPoolExecutor.submit` 5.5 %) |
| payload conversion (pydantic), the codec (AES-GCM) | 3 % + 2 % | ~1 | cheap: encryption is not where the time goes |
| the tracing interceptor (no exporter) | 1 % direct | ~0.3 | plus a trace-context header on every activity, which the codec then visits and encrypts |
| our workflow code, the metrics interceptor, our activities | 2 % | < 0.5 | the saga itself is negligible |

The provider service: aiohttp 35 %, the SQLite ledger 22 %, its routes and pydantic validation 25 %, about 4 ms per
saga in all (1.3 ms per call). What does **not** show: the codec, the metrics interceptor and the saga's own code are
each under 2 %; the search-attribute upsert costs the worker nothing measurable (it is one command) but costs the server a
visibility write (measured as a lever below).

So the ~20 ms between ours and the same-shape no-op floor at zero provider latency is, per saga: three HTTP round
trips to a real (local) service and its ledger (the floor's no-op activities make none), with about 2 ms of client
CPU and 1.3 ms of server CPU each, on CPUs the server, the worker and the providers share; the extra payloads the
codec visits inside the sandbox (search attributes, memo, summaries, the trace header); and the upsert's visibility
write. Cut, without losing a step's own activity and attempts in the Web UI, the codec, the metrics or the traces:

- **the tracing interceptor and the httpx instrumentation are installed only when spans are exported**
  (`wiring.tracing.client_interceptors`): with no exporter they cost a header payload per activity and a wrapper per
  provider call for spans that go nowhere. With `OTEL_EXPORTER_OTLP_ENDPOINT` set, traces are exactly as before.

Not cut, and why: the sandbox (the SDK's guard against non-deterministic workflow code; `--strict-sandbox` is
measured in the optimisations, and passing it through entirely would give up that guard); httpx (an aiohttp client
would save most of its 2 ms per call, but the activities' error mapping, their tests and the tracing instrumentation
are written against httpx: a change of client for a later round); the bridge and the thread pool (the SDK's own)."""


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
