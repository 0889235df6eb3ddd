"""Privacy and metrics as the shipped processes deliver them: ``run_worker.py``
with its metrics port counts a rolled-back run, and the Temporal CLI binary,
without our codec, shows its history with no traveller's name or e-mail."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from temporalio.client import Client

from tests.conftest import ProviderService, WorkerProcess, free_port
from tests.system.conftest import cli, temporal_cli
from wiring.metrics import ENV_METRICS_PORT

METERED_BUILD = f"metered-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def metered_worker(dev_client: Client, providers: ProviderService) -> Iterator[tuple[str, str]]:
    queue = f"tq-{uuid.uuid4().hex}"
    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_METRICS_PORT, str(port))
        worker = WorkerProcess(dev_client, providers.url, queue, build_id=METERED_BUILD)
    yield queue, f"http://127.0.0.1:{port}/metrics"
    worker.stop()


def test_a_sold_out_run_shows_in_the_workers_metrics_and_not_in_plain_history(
    dev_client: Client, metered_worker: tuple[str, str]
) -> None:
    queue, metrics_url = metered_worker
    workflow_id = f"privacy-{uuid.uuid4().hex[:8]}"
    done = cli(dev_client, "--scenario", "flight-sold-out", "--workflow-id", workflow_id, "--task-queue", queue)
    assert done.returncode == 1, done.stderr  # ROLLED_BACK

    metrics = httpx.get(metrics_url, timeout=5).text
    lines = [line for line in metrics.splitlines() if line.startswith("booking_")]
    rolled_back = [line for line in lines if line.startswith("booking_sagas_total") and 'status="ROLLED_BACK"' in line]
    assert len(rolled_back) == 1 and rolled_back[0].endswith(" 1"), lines
    # Every line, ours and the SDK's, names the build that served it.
    build = f'worker_build_id="{METERED_BUILD}"'
    assert all(build in line and f'worker_deployment="booking-{queue}"' in line for line in lines), lines
    sdk_lines = [line for line in metrics.splitlines() if line.startswith("temporal_workflow_failed")]
    assert sdk_lines and all(build in line for line in sdk_lines), metrics
    for step in ("book_car", "book_hotel"):
        assert any(
            line.startswith("booking_compensations_total") and f'step="{step}"' in line and "compensated" in line
            for line in lines
        ), (step, lines)

    # `temporal workflow show -o json` without the codec: no name, no e-mail.
    shown = temporal_cli(dev_client, "workflow", "show", "-w", workflow_id, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["events"]
    # Whole names: a short string like "Ada" turns up in base64 ciphertext by chance.
    for secret in ("Ada Lovelace", "Lovelace", "ada@example.com"):
        assert secret not in shown.stdout
