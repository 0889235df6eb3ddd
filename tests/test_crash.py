"""Kill -9 the worker mid-saga: a new worker finishes it, with nothing lost or doubled."""

from __future__ import annotations

from collections import Counter

from temporalio.client import Client

from tests.conftest import ProviderService, WorkerProcess, make_request, wait_until
from trip.models import Mode, RetryOverrides, Scenario
from trip.temporal import await_outcome, fetch_status, start_booking
from workflows.saga import StepState
from workflows.status import SagaStatus


async def test_worker_killed_mid_saga_loses_nothing(
    dev_client: Client, providers: ProviderService, task_queue: str
) -> None:
    # Every provider call takes 1.5 s; a lost attempt times out after 3 s.
    retry = RetryOverrides(initial_interval_s=0.1, activity_timeout_s=3)
    req = make_request(Scenario.SLOW, Mode.SEQUENTIAL, retry=retry)
    first = WorkerProcess(dev_client, providers.url, task_queue)
    try:
        handle = await start_booking(dev_client, req, task_queue=task_queue)
        # Wait until the car is booked and the hotel call is in flight.
        await wait_until(lambda: providers.active_kinds(handle.id) == ["car"], what="the car booking", timeout=30)
        status = await fetch_status(handle)
        assert {s.name: s.state for s in status.steps}["book_hotel"] in (StepState.RUNNING, StepState.PENDING)
    finally:
        first.kill()  # SIGKILL: no graceful shutdown, the hotel call dies with it
    second = WorkerProcess(dev_client, providers.url, task_queue)
    try:
        outcome = await await_outcome(handle)
    finally:
        second.stop()
    assert outcome.status is SagaStatus.COMPLETED
    rows = providers.reservations(handle.id)
    # No double booking (one row per kind) and no orphan (every row active and confirmed).
    assert Counter(r["kind"] for r in rows) == Counter({"car": 1, "hotel": 1, "flight": 1})
    assert all(r["status"] == "active" for r in rows)
    assert outcome.result is not None
    assert sorted(outcome.result.confirmations.values()) == sorted(r["confirmation"] for r in rows)
