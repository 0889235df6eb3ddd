"""Kill -9 the worker mid-saga: a new worker finishes it, with nothing lost or doubled."""

from __future__ import annotations

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from tests.conftest import ProviderService, WorkerProcess, make_request, wait_until
from trip.models import Mode, RetryOverrides, Scenario
from trip.status import SagaStatus
from wiring.outcome import await_outcome
from wiring.paused_status import describe_execution
from wiring.start import start_booking


async def hotel_started(client: Client, workflow_id: str) -> bool:
    """A worker has picked up the hotel booking (the server's pending-activity view)."""
    execution = await describe_execution(client, workflow_id)
    return any(
        p.activity_type.name == "book_hotel" and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for p in execution.pending_activities
    )


async def test_worker_killed_mid_saga_loses_nothing(
    dev_client: Client, providers: ProviderService, task_queue: str
) -> None:
    # Every provider call takes 1.5 s; a lost attempt times out after 3 s.
    retry = RetryOverrides(initial_interval_s=0.1, activity_timeout_s=3)
    req = make_request(Scenario.SLOW, Mode.SEQUENTIAL, retry=retry)
    first = WorkerProcess(dev_client, providers.url, task_queue)
    try:
        handle = await start_booking(dev_client, req, task_queue=task_queue)
        # Kill the worker while its hotel call is in flight: the activity has started.
        await wait_until(lambda: hotel_started(dev_client, handle.id), what="the hotel call to start")
        assert providers.active_kinds(handle.id) == ["car"]
    finally:
        first.kill()  # SIGKILL: no graceful shutdown; the new worker must ask the hotel again
    second = WorkerProcess(dev_client, providers.url, task_queue)
    try:
        outcome = await await_outcome(dev_client, handle)
    finally:
        second.stop()
    assert outcome.status is SagaStatus.COMPLETED
    rows = providers.reservations(handle.id)
    keys = {r["kind"]: r["idempotency_key"] for r in rows}
    # One reservation per kind, all held: the repeated hotel call did not book a second room.
    assert len(rows) == 3 and set(keys) == {"car", "hotel", "flight"}
    assert all(r["status"] == "active" for r in rows)
    # The crash really made the provider see the hotel key twice; it answered with the one booking.
    attempts = providers.attempts(list(keys.values()))
    assert attempts[keys["hotel"]]["reserve"] >= 2, attempts
    assert all(attempts[key].get("cancel", 0) == 0 for key in keys.values()), attempts
    # What the saga reports is exactly what the providers hold.
    assert outcome.result is not None
    assert outcome.result.confirmations == {r["kind"]: r["confirmation"] for r in rows}
