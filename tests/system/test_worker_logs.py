"""What a worker's log says about expected failures: one line each, no traceback."""

from __future__ import annotations

import uuid

from temporalio.client import Client

from tests.conftest import ProviderService, WorkerProcess, make_request, wait_until
from trip.models import Mode, Scenario
from trip.status import SagaStatus
from wiring.outcome import await_outcome
from wiring.start import start_booking


async def test_a_hotel_down_saga_logs_no_traceback(dev_client: Client, providers: ProviderService) -> None:
    queue = f"tq-{uuid.uuid4().hex}"
    worker = WorkerProcess(dev_client, providers.url, queue)
    try:
        workflow_id = f"logs-{uuid.uuid4().hex[:8]}"
        req = make_request(Scenario.HOTEL_DOWN, Mode.SEQUENTIAL)
        handle = await start_booking(dev_client, req, workflow_id=workflow_id, task_queue=queue)
        outcome = await await_outcome(dev_client, handle)
        assert outcome.status is SagaStatus.ROLLED_BACK
        # The undo lines are the last the worker logs for this saga.
        await wait_until(lambda: sum("undo " in line for line in worker.log) >= 2, what="the worker to log both undos")
    finally:
        worker.stop()
    log = "".join(worker.log)
    assert "Traceback" not in log, log
    # Each of the hotel's five refusals is still in the log, one line each.
    refusals = [line for line in worker.log if "hotel provider answered 503" in line]
    assert len(refusals) == 5, log
    # httpx's per-request lines are off by default.
    assert "HTTP Request:" not in log, log
