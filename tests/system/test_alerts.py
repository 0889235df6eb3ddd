"""The needs-attention alert, fired and cleared by a real Prometheus.

Debian's ``prometheus`` (``.ci/run`` installs it) runs on a free port with a
config this test writes: it scrapes ``run_worker.py``'s metrics endpoint and
the web app's ``/metrics`` every second, and evaluates the shipped
``BookingNeedsAttentionTooLong`` rule with its expression as shipped, only its
threshold lowered to 0 s and its ``for`` to 0 s (a real booking cannot be made
to wait 30 minutes here; ``promtool`` tests the shipped figures,
tests/unit/test_alert_rules.py). A ``car-cancel-broken`` booking gets stuck,
the alert fires; an operator resolves it, the alert clears. The shipped
``BookingWorkerNotScraped`` (``for`` 0 s) fires once the worker stops.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from temporalio.client import Client
from werkzeug.serving import make_server

from tests.conftest import (
    ROOT,
    ProviderService,
    WorkerProcess,
    free_port,
    make_request,
    wait_for_saga_status,
    wait_until,
)
from tests.system.conftest import make_app
from trip.models import Mode, Scenario
from trip.status import SagaStatus
from wiring.local_stack import stop_process
from wiring.metrics import ENV_METRICS_PORT
from wiring.start import start_booking
from wiring.updates import resolve

RULES = ROOT / "deploy" / "prometheus" / "booking-alerts.yml"
ALERT = "BookingNeedsAttentionTooLong"
WORKER_DOWN = "BookingWorkerNotScraped"


def shipped_rule(name: str) -> tuple[str, str]:
    """The shipped alert's expression and severity, read from the rules file's text."""
    block = RULES.read_text().split(f"- alert: {name}\n", 1)[1].split("- alert:", 1)[0]
    expr = re.search(r"^\s+expr: (.+)$", block, re.M)
    severity = re.search(r"^\s+severity: (\w+)$", block, re.M)
    assert expr and severity, block
    return expr.group(1), severity.group(1)


def with_threshold(expr: str, threshold: str) -> str:
    """``expr`` with its trailing ``> N`` comparison set to ``threshold``."""
    lowered, count = re.subn(r">\s*\d+(\.\d+)?\s*$", f"> {threshold}", expr)
    assert count == 1, f"expected the rule to end in '> N': {expr}"
    return lowered


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if found is None:
        pytest.fail("prometheus is missing: apt-get install prometheus (.ci/run installs it)")
    return found


@dataclass(frozen=True)
class MeteredWorker:
    process: WorkerProcess
    #: host:port of its /metrics.
    address: str


@pytest.fixture
def worker(dev_client: Client, providers: ProviderService, task_queue: str) -> Iterator[MeteredWorker]:
    """``run_worker.py`` on this test's queue, serving its metrics on a free port."""
    address = f"127.0.0.1:{free_port()}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_METRICS_PORT, address.rsplit(":", 1)[1])
        process = WorkerProcess(dev_client, providers.url, task_queue)
    yield MeteredWorker(process, address)
    process.stop()


@pytest.fixture
def web_metrics(dev_client: Client, task_queue: str) -> Iterator[str]:
    """The web app served over HTTP for this queue, its gauges cached for 1 s; yields host:port."""
    app: Flask = make_app(
        dev_client.service_client.config.target_host, dev_client.namespace, task_queue, VISIBILITY_METRICS_TTL=1.0
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    app.extensions["temporal_portal"].close()


@pytest.fixture
def prometheus(tmp_path: Path, worker: MeteredWorker, web_metrics: str) -> Iterator[str]:
    """Prometheus scraping both every second, with the shipped rules made fast; yields its URL."""
    expr, severity = shipped_rule(ALERT)
    down_expr, down_severity = shipped_rule(WORKER_DOWN)
    fast = [
        {"alert": ALERT, "expr": with_threshold(expr, "0"), "for": "0s", "labels": {"severity": severity}},
        {"alert": WORKER_DOWN, "expr": down_expr, "for": "0s", "labels": {"severity": down_severity}},
    ]
    rules = {"groups": [{"name": "booking-saga-test", "rules": fast}]}
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [
            {"job_name": "booking-worker", "static_configs": [{"targets": [worker.address]}]},
            {"job_name": "booking-web", "static_configs": [{"targets": [web_metrics]}]},
        ],
    }
    # JSON is YAML: no YAML library needed.
    (tmp_path / "rules.yml").write_text(json.dumps(rules))
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            prometheus_binary(),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
        log.close()


def api(base: str, path: str, **params: str) -> Any:
    try:
        response = httpx.get(f"{base}/api/v1/{path}", params=params, timeout=5)
    except httpx.TransportError:
        return None  # not listening yet
    return response.json()["data"] if response.status_code == 200 else None


def target_health(base: str) -> dict[str, str]:
    data = api(base, "targets")
    return {t["labels"]["job"]: t["health"] for t in data["activeTargets"]} if data else {}


def alert_state(base: str, name: str, **labels: str) -> str | None:
    """The state of the alert ``name`` whose labels include ``labels``; None when it is not active."""
    data = api(base, "alerts")
    for alert in data["alerts"] if data else []:
        if alert["labels"].get("alertname") == name and labels.items() <= alert["labels"].items():
            return str(alert["state"])
    return None


def scalar(base: str, query: str) -> float | None:
    data = api(base, "query", query=query)
    return float(data["result"][0]["value"][1]) if data and data["result"] else None


def test_the_shipped_rule_is_what_the_test_lowers() -> None:
    expr, severity = shipped_rule(ALERT)
    assert "booking_needs_attention_oldest_age_seconds" in expr
    assert with_threshold(expr, "0").endswith("> 0") and not expr.endswith("> 0")
    assert severity


async def test_a_stuck_undo_fires_the_alert_and_resolving_it_clears_it(
    dev_client: Client, task_queue: str, worker: MeteredWorker, prometheus: str
) -> None:
    await wait_until(
        lambda: target_health(prometheus),
        lambda h: h == {"booking-worker": "up", "booking-web": "up"},
        what="Prometheus to scrape the worker and the web app",
    )
    # Nothing is stuck on this queue yet: the gauge is scraped and the alert is quiet.
    await wait_until(
        lambda: scalar(prometheus, f'booking_needs_attention{{task_queue="{task_queue}"}}'),
        lambda v: v == 0,
        what="the web app's gauge to be scraped",
    )
    assert alert_state(prometheus, ALERT, task_queue=task_queue) is None

    handle = await start_booking(
        dev_client, make_request(Scenario.CAR_CANCEL_BROKEN, Mode.SEQUENTIAL), task_queue=task_queue
    )
    try:
        await wait_for_saga_status(handle, SagaStatus.NEEDS_ATTENTION)
        await wait_until(
            lambda: alert_state(prometheus, ALERT, task_queue=task_queue),
            lambda s: s == "firing",
            what=f"{ALERT} to fire",
        )
        # The worker's own counter reached Prometheus too: the undo that ran out of retries.
        failed = 'sum(booking_compensations_total{job="booking-worker",step="book_car",outcome="failed"})'
        await wait_until(lambda: scalar(prometheus, failed), lambda v: v == 1, what="the failed undo to be scraped")
    except BaseException:
        await handle.terminate("test failed")
        raise

    await resolve(handle, step="book_car", operator="ops", note="released by phone")
    await wait_until(
        lambda: alert_state(prometheus, ALERT, task_queue=task_queue), lambda s: s is None, what=f"{ALERT} to clear"
    )
    assert scalar(prometheus, f'booking_needs_attention{{task_queue="{task_queue}"}}') == 0

    # The worker stops: no target answers, and the shipped worker alert fires for it.
    assert alert_state(prometheus, WORKER_DOWN) is None
    worker.process.stop()
    await wait_until(
        lambda: alert_state(prometheus, WORKER_DOWN, instance=worker.address),
        lambda s: s == "firing",
        what=f"{WORKER_DOWN} to fire",
    )
