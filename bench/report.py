"""Writes the benchmark's results: JSON, a plot, and the markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASELINE, OURS = "baseline", "ours"


def write_outputs(results: dict[str, Any], root: Path, *, quick: bool) -> list[Path]:
    out_dir = root / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "latest-quick" if quick else "latest"
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    plot_path = out_dir / f"{stem}.png"
    plot(results, plot_path)
    paths = [json_path, plot_path]
    if not quick:
        docs = root / "docs"
        docs.mkdir(exist_ok=True)
        doc_plot = docs / "benchmarks.png"
        doc_plot.write_bytes(plot_path.read_bytes())
        md = docs / "benchmarks.md"
        md.write_text(markdown(results))
        paths += [doc_plot, md]
    return paths


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {BASELINE: "#b54708", OURS: "#175cd3"}
    labels = {BASELINE: "baseline: sequential", OURS: "ours: parallel"}
    for name in (BASELINE, OURS):
        samples = sorted(results["latency_ms"][name]["samples_ms"])
        fraction = [(i + 1) / len(samples) for i in range(len(samples))]
        left.step(samples, fraction, where="post", color=colours[name], label=labels[name])
    left.set_xlabel("success latency, start to result (ms)")
    left.set_ylabel("fraction of sagas")
    left.set_title("Latency distribution, concurrency 1 (happy)")
    left.grid(alpha=0.3)
    left.legend(loc="lower right")

    for name in (BASELINE, OURS):
        levels = [1] + [int(c) for c in results["throughput"]]
        rates = [1000 / results["latency_ms"][name]["mean"]] + [
            results["throughput"][c][name]["sagas_per_s"] for c in results["throughput"]
        ]
        right.plot(levels, rates, marker="o", color=colours[name], label=labels[name])
    right.set_xscale("log")
    right.set_xlabel("concurrent sagas")
    right.set_ylabel("completed sagas per second")
    right.set_title("Throughput against concurrency")
    right.grid(alpha=0.3)
    right.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


def markdown(r: dict[str, Any]) -> str:
    lat, ttc, mem, web = r["latency_ms"], r["time_to_consistent_ms"], r["memory"], r["web_ms"]
    cost, ratios, opt = r["cost_per_saga"], r["ratios"], r["optimisations"]
    rows = [
        ("p50 success latency (ms)", _f(lat[BASELINE]["p50"]), _f(lat[OURS]["p50"]), ratios["p50_latency"], "≤ 0.45"),
        ("p95 success latency (ms)", _f(lat[BASELINE]["p95"]), _f(lat[OURS]["p95"]), ratios["p95_latency"], ""),
        ("p99 success latency (ms)", _f(lat[BASELINE]["p99"]), _f(lat[OURS]["p99"]), ratios["p99_latency"], ""),
    ]
    for c, t in r["throughput"].items():
        rows.append(
            (
                f"throughput at {c} concurrent (sagas/s)",
                _f(t[BASELINE]["sagas_per_s"]),
                _f(t[OURS]["sagas_per_s"]),
                ratios[f"throughput_{c}"],
                "≥ 1.3" if c == "100" else "",
            )
        )
    rows += [
        (
            "p50 time to consistent, flight-sold-out (ms)",
            _f(ttc[BASELINE]["p50"]),
            _f(ttc[OURS]["p50"]),
            ratios["p50_time_to_consistent"],
            "≤ 0.5",
        ),
        (
            "p95 time to consistent, flight-sold-out (ms)",
            _f(ttc[BASELINE]["p95"]),
            _f(ttc[OURS]["p95"]),
            ratios["p95_time_to_consistent"],
            "",
        ),
        (
            "history events per successful saga",
            _f(cost[BASELINE]["history_events"]),
            _f(cost[OURS]["history_events"]),
            ratios["history_events"],
            "≤ 1.0",
        ),
        (
            "state transitions per successful saga",
            _f(cost[BASELINE]["state_transitions"]),
            _f(cost[OURS]["state_transitions"]),
            ratios["state_transitions"],
            "",
        ),
        (
            "worker CPU per saga (ms)",
            _f(cost[BASELINE]["worker_cpu_ms"]),
            _f(cost[OURS]["worker_cpu_ms"]),
            ratios["worker_cpu_per_saga"],
            "",
        ),
        (
            "server CPU per saga (ms)",
            _f(cost[BASELINE]["server_cpu_ms"]),
            _f(cost[OURS]["server_cpu_ms"]),
            ratios["server_cpu_per_saga"],
            "",
        ),
        (
            f"worker peak RSS, {mem[OURS]['sagas']} in flight (MiB)",
            _f(mem[BASELINE]["peak_rss_mib"]),
            _f(mem[OURS]["peak_rss_mib"]),
            ratios["worker_peak_rss"],
            "ours ≤ 150 MiB",
        ),
        (
            "web: p50 submit→response (ms); baseline waits for the saga",
            _f(web[BASELINE]["p50"]),
            _f(web[OURS]["p50"]),
            ratios["web_submit_p50"],
            "≤ 0.1",
        ),
    ]
    table = ["| measure | baseline | ours | ours/baseline | target |", "|---|---:|---:|---:|---|"]
    table += [f"| {name} | {b} | {o} | {ratio:.3f} | {target} |" for name, b, o, ratio, target in rows]
    met = "\n".join(f"- {'met' if ok else '**missed**'}: {name}" for name, ok in r["targets"].items())
    m = r["machine"]
    eager, http = opt["eager_start"], opt["shared_http_client"]
    cache, sandbox, pollers = opt["workflow_cache"], opt["shared_module_sandbox"], opt["poller_autoscaling"]
    poller_mem, slots_mem = opt["poller_autoscaling_memory"], opt["activity_slots_200_memory"]
    prov = r["providers"]
    return f"""# Benchmarks

Reproduce with `make bench` (about {int(r["bench_seconds"] // 60) + 1} minutes on 2 cores; `make bench-quick` takes
about a minute). Every figure below comes from one run, on {r["date"]}, on {m["cpu"]} with {m["cores"]} cores
(Python {m["python"]}, temporalio {m["temporalio"]}, Temporal CLI {m["temporal_cli"]}). Raw figures:
[`bench/results/latest.json`](../bench/results/latest.json).

**Baseline** is the booking saga in `sequential` mode: the same steps one after another, as the well-known sample
books them, on a worker with the SDK's defaults (as the sample runs its worker: strict sandbox, fixed pollers), with
the same server and providers and nothing added to slow it down. **Ours** is `parallel` mode on the worker as we ship
it. Both are measured in the same run, interleaved (ABBA) so that drift on a noisy machine hits both. The benchmark
starts its own in-memory dev server, provider service, the two workers and the two web apps, each its own process.

![latency distribution and throughput](benchmarks.png)

{chr(10).join(table)}

Targets:

{met}

How each figure is taken:

- *Latency*: from the `start_workflow` call to the workflow's result, {r["plan"]["latency_runs"]} happy sagas per mode,
  one at a time.
- *Throughput*: {r["plan"]["throughput_sagas"]} happy sagas per mode, at most N in flight, run in two halves in the
  order A B B A; completed sagas over wall time. CPU per saga is `/proc` user+system time of the worker and the server process over the
  {list(r["throughput"])[-1]}-concurrent phase, divided by the sagas.
- *Time to consistent*: `flight-sold-out`, from the start call to the workflow's failure, which the workflow raises
  only after every compensation is done. {r["rolled_back_with_reservations_left"]} of these runs left a reservation
  active in the ledger.
- *History events and state transitions*: from the history and `describe()` of 20 successful sagas per mode.
- *Memory*: peak resident set of each side's worker process, sampled every 50 ms, while {mem[OURS]["sagas"]} `slow`
  sagas run with every provider call taking {mem[OURS]["provider_latency_ms"]} ms (under the activities' 5 s HTTP
  timeout). All {mem[OURS]["sagas"]} were started within {mem[OURS]["start_all_seconds"]:.1f} s and the phase lasted
  {mem[OURS]["phase_seconds"]:.1f} s (the worker runs at most 100 activities at once), so they were open together;
  {mem[OURS]["failed"] + mem[BASELINE]["failed"]} failed.
- *Web*: ours is `POST /bookings` on the app as `make run` serves it (waitress), which starts the saga and answers
  303. The baseline is the sample's way: an async Flask view that connects a client per request and waits for the
  saga's result, served by the same waitress. {r["plan"]["web_runs"]} requests each.
- *Providers are not the bottleneck*: the provider service handled {prov["requests"]} requests in the run with a
  median handling time of {prov["p50_ms"]} ms (p95 {prov["p95_ms"]} ms, including the injected latency of the memory
  phase).

## Where the time goes

Averages over the last {cost[OURS]["sampled"]:.0f} happy sagas of each mode in the latency phase, read from their
histories (server clock), next to the client-side p50.

| | baseline | ours |
|---|---:|---:|
| client: start call to result, p50 (ms) | {_f(lat[BASELINE]["p50"])} | {_f(lat[OURS]["p50"])} |
| server: first to last history event (ms) | {_f(cost[BASELINE]["history_ms"])} | {_f(cost[OURS]["history_ms"])} |
| workflow tasks per saga | {_f(cost[BASELINE]["workflow_tasks"])} | {_f(cost[OURS]["workflow_tasks"])} |
| time in workflow tasks, scheduled to completed (ms) | {_f(cost[BASELINE]["workflow_task_ms"])} | {_f(cost[OURS]["workflow_task_ms"])} |
| time with an activity in flight (ms) | {_f(cost[BASELINE]["activities_in_flight_ms"])} | {_f(cost[OURS]["activities_in_flight_ms"])} |

Parallel booking removes two of the three activity round trips, but not the workflow tasks between them: each
activity completion that arrives while a workflow task is running makes the server schedule another one, so ours
still needs about {_f(cost[OURS]["workflow_tasks"])} workflow tasks against the baseline's
{_f(cost[BASELINE]["workflow_tasks"])}. Each costs a dispatch to the worker, the workflow code and a round trip to
the server, and on these 2 cores the server, the worker, the providers and the benchmark's client share the CPU.
That sets the floor of the latency ratio near one half. What would move it below: local activities for the three
provider calls (one workflow task for the whole trip, at the cost of the per-attempt visibility in the Web UI that
this project shows), or a server on its own cores so that the three completions land inside one workflow task.
Time to consistent after `flight-sold-out` has the same shape: ours unwinds both undos at once, but the failure, the
undos and the close are still separate workflow tasks.

Ratios within a few hundredths of a target can land on either side of it from one run to the next: these machines
are shared and noisy, which is why every figure here is a same-run ratio.

## Optimisations, each measured in the same run

| optimisation | with | without | effect | shipped |
|---|---:|---:|---|---|
| parallel booking (the table above) | {_f(lat[OURS]["p50"])} ms p50 | {_f(lat[BASELINE]["p50"])} ms p50 | ×{ratios["p50_latency"]:.2f} latency | yes, the default mode |
| eager workflow start (`request_eager_start`), in-process worker, parallel (the least stable figure here: it moves a lot between runs) | {_f(eager["eager_p50_ms"])} ms p50 | {_f(eager["normal_p50_ms"])} ms p50 | ×{eager["ratio"]:.2f} latency; {eager["eagerly_started"]}/{eager["runs"]} starts were eager | no: it needs a worker in the starting process, and the CLI and the web app start bookings for separate workers |
| one shared HTTP client per worker | {_f(http["shared_p50_ms"], 2)} ms p50 per provider call | {_f(http["per_call_p50_ms"], 2)} ms with a client per call | ×{http["ratio"]:.2f} per call | yes |
| workflow cache (`max_cached_workflows=1000` vs 0), parallel, 50 concurrent | {_f(cache["shipped"]["sagas_per_s"])} sagas/s, {_f(cache["shipped"]["worker_cpu_ms_per_saga"])} ms worker CPU per saga | {_f(cache["variant"]["sagas_per_s"])} sagas/s, {_f(cache["variant"]["worker_cpu_ms_per_saga"])} ms | ×{cache["ratio_throughput"]:.2f} throughput, ×{cache["ratio_worker_cpu"]:.2f} worker CPU | yes |
| workflow module imported once (shared-module sandbox) vs re-imported per run (`--strict-sandbox`, the SDK default), parallel, 50 concurrent | {_f(sandbox["shipped"]["sagas_per_s"])} sagas/s, {_f(sandbox["shipped"]["worker_cpu_ms_per_saga"])} ms worker CPU per saga | {_f(sandbox["variant"]["sagas_per_s"])} sagas/s, {_f(sandbox["variant"]["worker_cpu_ms_per_saga"])} ms | ×{sandbox["ratio_throughput"]:.2f} throughput, ×{sandbox["ratio_worker_cpu"]:.2f} worker CPU | yes; the tests also run the workflow under the strict sandbox |
| poller autoscaling (`--poller-autoscaling`) vs the SDK's fixed five pollers, parallel, 50 concurrent | {_f(pollers["variant"]["sagas_per_s"])} sagas/s, {_f(pollers["variant"]["worker_cpu_ms_per_saga"])} ms worker CPU per saga | {_f(pollers["shipped"]["sagas_per_s"])} sagas/s, {_f(pollers["shipped"]["worker_cpu_ms_per_saga"])} ms | ×{1 / pollers["ratio_throughput"]:.2f} throughput, ×{1 / pollers["ratio_worker_cpu"]:.2f} worker CPU; peak RSS with {mem[OURS]["sagas"]} in flight {_f(poller_mem["variant"]["peak_rss_mib"])} MiB against {_f(poller_mem["shipped"]["peak_rss_mib"])} | no: on one worker and one dev server it bought little throughput for more peak memory; worth re-measuring with many workers |
| 200 activity slots instead of the SDK's 100 (`--max-concurrent-activities 200`), {mem[OURS]["sagas"]} slow sagas in flight | {_f(slots_mem["variant"]["peak_rss_mib"])} MiB peak RSS, phase {_f(slots_mem["variant"]["phase_seconds"])} s | {_f(slots_mem["shipped"]["peak_rss_mib"])} MiB, phase {_f(slots_mem["shipped"]["phase_seconds"])} s | {slots_mem["delta_peak_rss_mib"]:+.1f} MiB peak RSS | no: 100 |
| sandbox pass-through of pydantic, httpx-free models and the saga core (`imports_passed_through`) | | | always on: without it every run would rebuild the pydantic models; not measured separately | yes |
"""
