"""The benchmark harness itself runs end to end (figures are not asserted: they
belong to ``make bench``, never to a timed test)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from bench.report import page
from tests.conftest import ROOT

#: The ratios ``python -m bench --quick --json`` reports: the targets, the floor they are judged
#: against, and the rollback behind a backlog. docs/benchmarks.md reads every one of them.
RATIOS = (
    "p50_latency",
    "p50_time_to_consistent",
    "throughput_100",
    "scale_2_workers",
    "scale_2_workers_capped",
    "rollback_under_backlog",
    "rollback_unwind_under_backlog",
    "rollback_under_backlog_escalated",
    "floor_empty_p50_latency",
    "floor_local_p50_latency",
    "floor_empty_p50_time_to_consistent",
    "floor_local_p50_time_to_consistent",
    "floor_empty_throughput_100",
    "floor_local_throughput_100",
    "history_events",
    "worker_peak_rss",
    "web_submit_p50",
    "form_update_with_start_vs_start_then_result",
    # Against the physical floor: realistic provider latency, the overhead at zero latency, CPU per saga.
    "latency_vs_limit_realistic",
    "latency_vs_seed_style_realistic",
    "worker_cpu_ratio",
    "server_cpu_ratio",
)


def test_quick_bench_prints_one_results_object_with_the_ratios() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    for key in RATIOS:
        value = results["ratios"][key]
        assert math.isfinite(value) and value > 0, key
    # The seed-style baseline, our sequential mode and ours all ran in the same run.
    assert results["quick"] is True and set(results["latency_ms"]) == {"baseline", "sequential", "ours"}
    # Neither side's rollbacks (ours fails, the baseline returns a string) left a booking held.
    assert results["rolled_back_with_reservations_left"] == 0
    assert results["scale"]["two_workers"]["worker_2_cpu_ms_per_saga"] > 0  # the second worker really served sagas
    # So did the second capped worker, capped by a method this machine has.
    assert results["scale_capped"]["two_workers"]["worker_2_cpu_ms_per_saga"] > 0
    assert results["scale_capped"]["method"] in ("cgroup2", "cgroup1", "cpulimit", "duty-cycle")
    # The floor is what it claims: the empty workflow and the local-activity trip each took one
    # workflow task, and the local trip's rollbacks left nothing held either.
    assert results["floor"]["workflow_tasks"]["floor_empty"] == 1
    assert results["floor"]["workflow_tasks"]["floor_local"] == 1
    assert results["floor"]["reservations_left"] == 0
    # Ours minus the same-shape no-op floor: a difference, so any sign is a figure.
    assert math.isfinite(results["ratios"]["overhead_ms_vs_floor"])
    # The realistic limit is built from every measured saga's own provider answers.
    for side, limit in results["realistic"]["limits"].items():
        assert limit["sagas_measured"] == results["plan"]["realistic_runs"], side
    # Parallel mode really ran the three bookings at once.
    assert results["cost_per_saga"]["ours"]["workflow_tasks"] < results["cost_per_saga"]["baseline"]["workflow_tasks"]
    assert (ROOT / "bench" / "results" / "latest-quick.json").exists()
    assert (ROOT / "bench" / "results" / "latest-quick.png").stat().st_size > 10_000


def test_the_benchmarks_page_is_what_the_report_renders_from_the_committed_results() -> None:
    """docs/benchmarks.md is the one place the figures are written out, and it is generated:
    a figure edited by hand there (or results committed without the page) fails here.
    ``python -m bench.report`` renders the page again from the results."""
    results = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    assert (ROOT / "docs" / "benchmarks.md").read_text() == page(results, ROOT)
