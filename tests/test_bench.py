"""The benchmark harness itself runs end to end (figures are not asserted: they
belong to ``make bench``, never to a timed test)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from tests.conftest import ROOT


def test_quick_bench_prints_one_results_object_with_the_ratios() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    for key in ("p50_latency", "throughput_100", "p50_time_to_consistent", "history_events", "web_submit_p50"):
        value = results["ratios"][key]
        assert math.isfinite(value) and value > 0, key
    assert results["quick"] is True and set(results["latency_ms"]) == {"baseline", "ours"}
    assert results["rolled_back_with_reservations_left"] == 0
    assert results["memory"]["ours"]["failed"] == 0 and results["memory"]["baseline"]["failed"] == 0
    # Parallel mode really ran the three bookings at once.
    assert results["cost_per_saga"]["ours"]["workflow_tasks"] < results["cost_per_saga"]["baseline"]["workflow_tasks"]
    assert (ROOT / "bench" / "results" / "latest-quick.json").exists()
    assert (ROOT / "bench" / "results" / "latest-quick.png").stat().st_size > 10_000
