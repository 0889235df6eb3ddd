"""Writes the benchmark's results: JSON, a plot, and docs/benchmarks.md.

``docs/benchmarks.md`` is the one place the figures are written out; the
README links to it rather than copying them. It is generated from
``bench/results/latest.json`` (and the fairness section from
``bench/results/fairness.json``), except the hand-written findings between
``KEPT_START`` and ``KEPT_END`` (the per-dispatch delay's investigation), which
are carried over from the file being replaced. ``python -m bench.report``
renders it again without measuring.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.plot import plot, plot_knee
from bench.report_perf import cpu_section, overhead_section, realistic_section
from bench.report_phases import (
    fairness_section,
    floor_section,
    form_section,
    num,
    optimisations_section,
    rollback_section,
    scale_section,
    why_above_the_floor,
)
from bench.report_scale import capped_scale_section, undo_queue_section
from bench.sides import BASELINE, OURS, SEQUENTIAL

KEPT_START = "<!-- hand-written, kept by bench/report.py -->"
KEPT_END = "<!-- end of hand-written -->"


def write_outputs(results: dict[str, Any], root: Path, *, quick: bool) -> list[Path]:
    out_dir = root / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "latest-quick" if quick else "latest"
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    plot_path = out_dir / f"{stem}.png"
    plot(results, plot_path)
    paths = [json_path, plot_path]
    if "scale_capped" in results:
        knee_path = out_dir / f"{stem}.knee.png"  # latest-quick.* is not kept
        plot_knee(results["scale_capped"], knee_path)
        paths.append(knee_path)
    if not quick:
        docs = root / "docs"
        docs.mkdir(exist_ok=True)
        doc_plot = docs / "benchmarks.png"
        doc_plot.write_bytes(plot_path.read_bytes())
        md = docs / "benchmarks.md"
        md.write_text(page(results, root))
        paths += [doc_plot, md]
        if "scale_capped" in results:
            doc_knee = docs / "benchmarks-knee.png"
            doc_knee.write_bytes(knee_path.read_bytes())
            paths.append(doc_knee)
    return paths


def page(results: dict[str, Any], root: Path) -> str:
    """docs/benchmarks.md for ``results``: the current file's hand-written block kept, the
    fairness section from ``bench/results/fairness.json`` if it has been measured."""
    fairness = root / "bench" / "results" / "fairness.json"
    return markdown(
        results, kept(root / "docs" / "benchmarks.md"), json.loads(fairness.read_text()) if fairness.exists() else None
    )


def rerender(root: Path) -> list[Path]:
    """Rewrite the plot and docs/benchmarks.md from ``bench/results/latest.json`` (no new measurement)."""
    results = json.loads((root / "bench" / "results" / "latest.json").read_text())
    return write_outputs(results, root, quick=False)


def kept(md: Path) -> str:
    """The hand-written block of the current file, markers included ('' if none)."""
    text = md.read_text() if md.exists() else ""
    if KEPT_START not in text or KEPT_END not in text:
        return ""
    return text[text.index(KEPT_START) : text.index(KEPT_END) + len(KEPT_END)]


def times(value: float) -> str:
    """A ratio as the summary prints it: two decimals near 1, fewer as it grows."""
    return f"×{value:.2f}" if value < 2 else f"×{value:.1f}" if value < 10 else f"×{value:.0f}"


def header(r: dict[str, Any]) -> str:
    m, scale = r["machine"], r["scale"]
    return f"""# Benchmarks

Reproduce with `make bench` (about {int(r["bench_seconds"] // 60) + 1} minutes here; `make bench-quick` runs the same
harness with small counts). Every figure below comes from one run, on {r["date"]}, on {m["cpu"]} with {m["cores"]}
cores (Python {m["python"]}, temporalio {m["temporalio"]}, Temporal CLI {m["temporal_cli"]}). **The machine was
shared** with other jobs (load average {scale["load_average"][0]:.1f} on {m["cores"]} cores during the scale phase),
so absolute times are inflated and noisy; read the same-run ratios. Raw figures:
[`bench/results/latest.json`](../bench/results/latest.json). This page is written by the benchmark (`make bench`; `python -m
bench.report` renders it again from the raw figures): link to it rather than copy its figures."""


def in_short(r: dict[str, Any]) -> str:
    """The headline figures, for a reader (or the README) who wants them in one place."""
    ratios, mem, b, f = r["ratios"], r["memory"], r["rollback_under_backlog"], r["floor"]
    c_hi, c_floor = r["throughput_concurrency"], f["concurrency"]
    met = [name for name, ok in r["targets"].items() if ok]
    missed = [name for name, ok in r["targets"].items() if not ok]
    return f"""## In short

Ours ÷ the seed-style baseline (described below), all from this one run:

- p50 latency {times(ratios["p50_latency"])}, p50 time to consistent after a rollback {times(ratios["p50_time_to_consistent"])},
  throughput at {c_hi} in flight {times(ratios[f"throughput_{c_hi}"])}, history events {times(ratios["history_events"])};
- worker peak RSS {mem[OURS]["peak_rss_mib"]:.0f} MiB with {mem[OURS]["sagas"]} sagas in flight; the form's submit
  {times(ratios["web_submit_p50"])} of a request that waits for the saga; two worker processes {times(ratios["scale_2_workers"])}
  of one;
- targets met: {", ".join(met) or "none"}; missed: {", ".join(missed) or "none"};
- the floor, in the same run: a workflow that does nothing gets latency {times(ratios["floor_empty_p50_latency"])}, time to
  consistent {times(ratios["floor_empty_p50_time_to_consistent"])} and throughput {times(ratios[f"floor_empty_throughput_{c_floor}"])}
  of the baseline; the whole trip as local activities in one workflow task {times(ratios["floor_local_p50_latency"])},
  {times(ratios["floor_local_p50_time_to_consistent"])} and {times(ratios[f"floor_local_throughput_{c_floor}"])} (what each
  target needs is under "The floor" below);
- a rollback behind {b["backlog"]} queued bookings: its unwind takes {times(ratios["rollback_unwind_under_backlog"])} of idle
  with undo priority ({times(ratios["rollback_unwind_under_backlog_without_priority"])} without), but from its start call
  {times(ratios.get("rollback_under_backlog_from_start_call", ratios["rollback_under_backlog"]))}, since its start
  and its bookings queue behind the backlog.{against_the_limit(ratios)}"""


def against_the_limit(ratios: dict[str, float]) -> str:
    """The in-short line on the physical limit, for runs that measured it."""
    if "latency_vs_limit_realistic" not in ratios:
        return ""
    return f"""
- against the physical limit: with realistic provider latency ours takes {times(ratios["latency_vs_limit_realistic"])}
  of its limit (the slowest provider's answer plus the same-shape no-op floor) and {times(ratios["latency_vs_seed_style_realistic"])}
  of the baseline; at zero provider latency it is {ratios["overhead_ms_vs_floor"]:.1f} ms above that floor; CPU per saga
  at 100 in flight {times(ratios["worker_cpu_ratio"])} of the baseline's in the worker, {times(ratios["server_cpu_ratio"])} in the server."""


def sides_described() -> str:
    return """**Baseline** is an independent workflow written the way the well-known sample writes a saga
([`bench/seed_style.py`](../bench/seed_style.py)): sequential `execute_activity` calls, each undo's name appended to a
list before its step, `except Exception` → undos in reverse → return a string, on a worker with the SDK's defaults
(strict sandbox, five pollers). It calls our six activities by name against the same provider service. **Ours** is
the booking workflow in `parallel` mode on the worker as we ship it; **ours, sequential** is the same workflow and
worker in `sequential` mode, kept as a second comparison. All sides run in the same run, interleaved (ABBA) so that
drift hits all of them. The benchmark starts its own in-memory dev server (with `DEV_SERVER_FLAGS`), provider
service, workers and web apps, each its own process.

![latency distribution, and latency and throughput against concurrency](benchmarks.png)"""


def summary_table(r: dict[str, Any]) -> str:
    """The first table: every side's headline figures and ours ÷ the baseline."""
    lat, ttc, mem, web = r["latency_ms"], r["time_to_consistent_ms"], r["memory"], r["web_ms"]
    cost, ratios = r["cost_per_saga"], r["ratios"]
    c_hi = r["throughput_concurrency"]
    rows = [
        ("p50 success latency (ms)", lat, "p50", ratios["p50_latency"], "≤ 0.25"),
        ("p95 success latency (ms)", lat, "p95", ratios["p95_latency"], ""),
        ("p99 success latency (ms)", lat, "p99", ratios["p99_latency"], ""),
        ("p50 time to consistent, flight-sold-out (ms)", ttc, "p50", ratios["p50_time_to_consistent"], "≤ 0.30"),
        ("p95 time to consistent, flight-sold-out (ms)", ttc, "p95", ratios["p95_time_to_consistent"], ""),
        ("history events per successful saga", cost, "history_events", ratios["history_events"], "≤ 1.0"),
        ("state transitions per successful saga", cost, "state_transitions", ratios["state_transitions"], ""),
        ("workflow tasks per successful saga", cost, "workflow_tasks", None, ""),
    ]
    table = [
        "| measure | baseline (seed-style) | ours, sequential | ours (parallel) | ours/baseline | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, figures, key, ratio, target in rows:
        ratio_text = f"{ratio:.3f}" if ratio is not None else ""
        cells = " | ".join(num(figures[side][key]) for side in (BASELINE, SEQUENTIAL, OURS))
        table.append(f"| {name} | {cells} | {ratio_text} | {target} |")
    for c, t in r["throughput"].items():
        target = "≥ 2.0" if c == c_hi else ""
        table.append(
            f"| throughput at {c} in flight (sagas/s); p50 latency there (ms) | "
            f"{num(t[BASELINE]['sagas_per_s'])}; {num(t[BASELINE]['p50_ms'], 0)} | | "
            f"{num(t[OURS]['sagas_per_s'])}; {num(t[OURS]['p50_ms'], 0)} | {ratios[f'throughput_{c}']:.3f} | {target} |"
        )
    table += [
        f"| worker CPU per saga at {c_hi} in flight (ms) | {num(cost[BASELINE]['worker_cpu_ms'])} | | "
        f"{num(cost[OURS]['worker_cpu_ms'])} | {ratios['worker_cpu_per_saga']:.3f} | |",
        f"| server CPU per saga at {c_hi} in flight (ms) | {num(cost[BASELINE]['server_cpu_ms'])} | | "
        f"{num(cost[OURS]['server_cpu_ms'])} | {ratios['server_cpu_per_saga']:.3f} | |",
        f"| worker peak RSS, {mem[OURS]['sagas']} in flight (MiB) | {num(mem[BASELINE]['peak_rss_mib'])} | | "
        f"{num(mem[OURS]['peak_rss_mib'])} | {ratios['worker_peak_rss']:.3f} | ours ≤ 300 MiB |",
        f"| web: p50 submit→response (ms); baseline waits for the saga | {num(web[BASELINE]['p50'])} | | "
        f"{num(web[OURS]['p50'])} | {ratios['web_submit_p50']:.3f} | ≤ 0.1 |",
    ]
    return "\n".join(table)


def targets_section(r: dict[str, Any]) -> str:
    met = "\n".join(f"- {'met' if ok else '**missed**'}: {name}" for name, ok in r["targets"].items())
    return f"""Targets (the goals this design set itself against the seed-style baseline; the floor below shows which
are out of reach on this machine):

{met}"""


def methods(r: dict[str, Any]) -> str:
    """How each figure of the first table is taken."""
    mem, prov = r["memory"], r["providers"]
    cache = mem["cache_5000"]
    c_hi = r["throughput_concurrency"]
    return f"""How each figure is taken:

- *Latency*: from the `start_workflow` call to the workflow's result, {r["plan"]["latency_runs"]} happy sagas per
  side, one at a time.
- *Throughput and latency against concurrency*: happy sagas, at most N in flight, three times N per side (at least
  20, at most {r["plan"]["throughput_sagas"]}), in two halves in the order A B B A; completed sagas over wall time,
  and the p50 of each saga's start-to-result time. CPU per saga is `/proc` user+system time of each process over the
  {c_hi}-in-flight phase, divided by the sagas.
- *Time to consistent*: `flight-sold-out`, from the start call to the end: ours fails only after every compensation
  is done, the baseline returns its string after its undos. {r["rolled_back_with_reservations_left"]} of these runs
  left a reservation active in the ledger.
- *History events, state transitions, workflow tasks*: from the history and `describe()` of the last 20 successful
  sagas per side.
- *Memory*: peak resident set of a fresh worker process, sampled every 50 ms, while {mem[OURS]["sagas"]} `slow` sagas
  (every provider call takes {mem[OURS]["provider_latency_ms"]} ms) are open at once: all started within
  {mem[OURS]["start_all_seconds"]:.1f} s, and the window closes {r["plan"]["inflight_hold_s"]} s after the last one
  has had its first workflow task ({mem[OURS]["all_scheduled_seconds"]:.1f} s after the first start), so every saga
  has passed through the worker. With the shipped cache of 1000 workflows the worker evicts and later replays the
  rest; with `--max-cached-workflows 5000` it keeps all of them: peak {num(cache["peak_rss_mib"])} MiB against
  {num(mem[OURS]["peak_rss_mib"])} MiB shipped. {mem[OURS]["closed_in_sample"]} of a sample of 50 had closed by then.
- *Web*: ours is `POST /bookings` on the app as `make run` serves it (cheroot), which starts the saga and answers
  303. The baseline is the sample's way: an async Flask view that connects a client per request and waits for the
  seed-style saga's result, served by the same cheroot settings. {r["plan"]["web_runs"]} requests each.
- *Providers are not the bottleneck*: the provider service handled {prov["requests"]} requests before the memory
  phase, with a median handling time of {prov["p50_ms"]} ms."""


def where_the_time_goes(r: dict[str, Any]) -> str:
    lat, cost = r["latency_ms"], r["cost_per_saga"]

    def row(label: str, figures: dict[str, dict[str, float]], key: str) -> str:
        return f"| {label} | " + " | ".join(num(figures[side][key]) for side in (BASELINE, SEQUENTIAL, OURS)) + " |"

    return f"""## Where the time goes

Averages over the last {cost[OURS]["sampled"]:.0f} happy sagas of each side in the latency phase, read from their
histories (server clock), next to the client-side p50.

| | baseline | ours, sequential | ours |
|---|---:|---:|---:|
{row("client: start call to result, p50 (ms)", lat, "p50")}
{row("server: first to last history event (ms)", cost, "history_ms")}
{row("workflow tasks per saga", cost, "workflow_tasks")}
{row("time in workflow tasks, scheduled to completed (ms)", cost, "workflow_task_ms")}
{row("time with an activity in flight (ms)", cost, "activities_in_flight_ms")}

Ratios within a few hundredths of a target can land on either side of it from one run to the next: these machines
are shared and noisy, which is why every figure here is a same-run ratio."""


def markdown(r: dict[str, Any], hand_written: str = "", fairness: dict[str, Any] | None = None) -> str:
    """docs/benchmarks.md: one function per section, in the order a reader needs them."""
    sections = [
        header(r),
        in_short(r),
        sides_described(),
        summary_table(r),
        targets_section(r),
        floor_section(r),
        why_above_the_floor(r),
        realistic_section(r),
        overhead_section(r),
        cpu_section(r),
        methods(r),
        scale_section(r),
        capped_scale_section(r),
        rollback_section(r),
        undo_queue_section(r),
        form_section(r),
        where_the_time_goes(r),
        hand_written,
        fairness_section(fairness, r),
        optimisations_section(r),
    ]
    return "\n\n".join(section.strip("\n") for section in sections if section) + "\n"


if __name__ == "__main__":
    for written in rerender(Path(__file__).resolve().parent.parent):
        print(f"wrote {written}")
