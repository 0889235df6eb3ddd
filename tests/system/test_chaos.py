"""``make chaos`` in small: sagas survive SIGKILLed workers, providers and dev server.

The harness (``bench/chaos.py``) does the checking; the small run here is what
CI runs (``pytest -m chaos`` runs it alone). The checks themselves are also
tested on made-up ledgers, so that a harness that checked nothing would fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

from bench.chaos import CANCELLED, check_saga, select_cases
from tests.conftest import ROOT
from trip.models import Scenario
from trip.scenarios import SCENARIOS
from trip.status import BookingResult


@pytest.mark.chaos
def test_small_chaos_run_ends_every_saga_as_its_scenario_says_with_an_exact_ledger() -> None:
    # Its own session, so that a timeout can stop the harness and every process it started.
    harness = subprocess.Popen(
        [sys.executable, "-m", "bench.chaos", "--sagas", "60", "--min-kills", "8", "--settle-timeout", "120", "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = harness.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(harness.pid, signal.SIGKILL)
        harness.communicate()
        raise
    assert stdout, stderr[-3000:]
    summary = json.loads(stdout)
    assert summary["violations"] == [], stderr[-3000:]
    assert harness.returncode == 0
    assert summary["kills"] >= 8 and summary["restarts"] == {"providers": 1, "temporal": 1}
    assert sum(row["sagas"] for row in summary["cases"]) == 60
    for row in summary["cases"]:
        assert row["actual"] == {row["expected"]: row["sagas"]}, row
    # Every scenario an unattended run can reach is in the mix, and a cancelled one.
    driven = {row["case"] for row in summary["cases"]}
    unattended = {
        s.value
        for s, spec in SCENARIOS.items()
        if spec.expected in ("COMPLETED", "ROLLED_BACK") and not spec.needs_confirmation and not spec.needs_callback
    }
    assert unattended <= driven
    assert any(row["expected"] == CANCELLED for row in summary["cases"])


def rows(*kinds_status: tuple[str, str]) -> list[dict[str, str]]:
    return [{"kind": k, "status": s, "confirmation": f"{k}-{i}"} for i, (k, s) in enumerate(kinds_status)]


COMPLETE = rows(("car", "active"), ("hotel", "active"), ("flight", "active"))


@pytest.mark.parametrize(
    ("expected", "actual", "ledger", "wanted"),
    [
        ("COMPLETED", "COMPLETED", COMPLETE, []),
        ("COMPLETED", "ROLLED_BACK", [], ["ended ROLLED_BACK, expected COMPLETED"]),
        (
            "COMPLETED",
            "COMPLETED",
            rows(("car", "active"), ("hotel", "cancelled"), ("flight", "active")),
            ["COMPLETED with active ['car', 'flight'], expected one of each kind"],
        ),
        (
            "COMPLETED",
            "COMPLETED",
            [*COMPLETE, *rows(("car", "cancelled"))],
            ["2 ledger rows for car"],
        ),
        ("ROLLED_BACK", "ROLLED_BACK", rows(("car", "cancelled"), ("hotel", "cancelled")), []),
        ("ROLLED_BACK", "ROLLED_BACK", rows(("car", "active")), ["ROLLED_BACK with car still active"]),
        ("CANCELLED", "CANCELLED", rows(("hotel", "active")), ["CANCELLED with hotel still active"]),
        (
            "ROLLED_BACK",
            "OPEN(RUNNING, COMPENSATING)",
            rows(("car", "active")),
            ["ended OPEN(RUNNING, COMPENSATING), expected ROLLED_BACK"],
        ),
    ],
)
def test_the_checks_find_each_kind_of_violation(
    expected: str, actual: str, ledger: list[dict[str, str]], wanted: list[str]
) -> None:
    assert check_saga(expected, actual, ledger, None) == wanted


def test_a_completed_saga_must_return_the_confirmations_the_ledger_holds() -> None:
    right = BookingResult(confirmations={"car": "car-0", "hotel": "hotel-1", "flight": "flight-2"}, steps=[])
    wrong = BookingResult(confirmations={"car": "car-0", "hotel": "hotel-9", "flight": "flight-2"}, steps=[])
    assert check_saga("COMPLETED", "COMPLETED", COMPLETE, right) == []
    assert check_saga("COMPLETED", "COMPLETED", COMPLETE, wrong) == ["confirmations returned differ from the ledger's"]


def test_cases_come_from_the_scenario_table_and_skip_what_needs_a_person() -> None:
    cases, skipped = select_cases()
    assert {c.scenario for c in cases if not c.cancel} == {
        s
        for s, spec in SCENARIOS.items()
        if spec.expected in ("COMPLETED", "ROLLED_BACK") and not spec.needs_confirmation and not spec.needs_callback
    }
    assert set(skipped) == {
        s.value
        for s, spec in SCENARIOS.items()
        if spec.expected not in ("COMPLETED", "ROLLED_BACK") or spec.needs_confirmation or spec.needs_callback
    }
    # A spec that needs a traveller's confirmation (hold and confirm) is skipped,
    # whatever its outcome; a new plain one is driven without editing the harness.
    table = {
        Scenario.HAPPY: SimpleNamespace(scenario=Scenario.HAPPY, expected="COMPLETED", faults={}),
        Scenario.SLOW: SimpleNamespace(
            scenario=Scenario.SLOW, expected="ROLLED_BACK", faults={}, needs_confirmation=True
        ),
    }
    cases, skipped = select_cases(table)
    assert [c.label for c in cases] == ["happy"]
    assert "confirmation" in skipped["slow"]
