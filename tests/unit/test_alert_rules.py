"""The shipped Prometheus alerting rules (``deploy/prometheus/booking-alerts.yml``).

``promtool`` (Debian's ``prometheus`` package; ``.ci/run`` installs it) checks
the rules and runs their unit tests, ``booking-alerts.test.yml``: synthetic
series in, which alerts fire when, with which labels and words. Every alert
must have a case where it fires and one where it does not, and a runbook entry
in docs/observability.md that its ``runbook_url`` points at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_docs import HEADING, slug

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "booking-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "booking-alerts.test.yml"
EXAMPLE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RUNBOOK = ROOT / "docs" / "observability.md"

ALERT = re.compile(r"^\s*- alert: (\w+)$", re.M)
#: One ``alert_rule_test`` case: the alert's name and whether it expects nothing.
CASE = re.compile(r"^\s*alertname: (\w+)\n\s*exp_alerts:( \[\])?$", re.M)


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install prometheus (.ci/run installs it)")
    return found


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True, timeout=60, cwd=ROOT)


def alert_names() -> list[str]:
    return ALERT.findall(RULES.read_text())


def test_the_rules_are_valid() -> None:
    done = run_promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_example_scrape_config_is_valid_and_loads_the_rules() -> None:
    done = run_promtool("check", "config", EXAMPLE_CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout


def test_each_alert_fires_and_stays_quiet_when_it_should() -> None:
    done = run_promtool("test", "rules", RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = CASE.findall(RULE_TESTS.read_text())
    firing = {name for name, empty in cases if not empty}
    quiet = {name for name, empty in cases if empty}
    names = alert_names()
    assert len(names) >= 5
    assert [n for n in names if n not in firing] == []
    assert [n for n in names if n not in quiet] == []


def test_every_alert_links_its_runbook_entry() -> None:
    anchors = {slug(h) for h in HEADING.findall(RUNBOOK.read_text())}
    text = RULES.read_text()
    for name in alert_names():
        assert f'runbook_url: "docs/observability.md#{name.lower()}"' in text, name
        assert name.lower() in anchors, f"docs/observability.md has no heading for {name}"
