"""A stuck rollback waits for an operator: the booking workflow on the
time-skipping server, with mock activities whose undo the test controls.

Sequential mode only: in parallel mode the workflow cancels siblings that may
have just completed, and the time-skipping server fails such a workflow task
("ACTIVITY_UNKNOWN") where the real server accepts it. Parallel mode's
NEEDS_ATTENTION runs on the dev server in ``tests/workflow/test_booking_workflow.py``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from saga import StepState
from tests.conftest import booking_workers, make_request, own_time_skipping_env, wait_for_saga_status
from trip.errors import ErrorType
from trip.models import CancelRequest, CancelResult, Kind, Mode, Reservation, ReserveRequest, Scenario
from trip.status import BookingStatus, SagaStatus
from wiring.codec import data_converter
from wiring.live_status import fetch_status
from wiring.start import start_booking
from wiring.updates import rejection_message, resolve, retry_compensation

WORKFLOW_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}


@dataclass
class CarUndo:
    """How the mock car provider answers cancels; the test flips it."""

    mode: str = "fail"  # fail | ok | gate
    calls: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    undo_calls: list[str] = field(default_factory=list)


def mock_activities(car: CarUndo) -> list[Any]:
    def booked(kind: Kind) -> Reservation:
        return Reservation(kind=kind, reservation_id=f"r-{kind.value}", confirmation=f"{kind.value.upper()}-1")

    @activity.defn(name="book_car")
    async def book_car(req: ReserveRequest) -> Reservation:
        return booked(Kind.CAR)

    @activity.defn(name="book_hotel")
    async def book_hotel(req: ReserveRequest) -> Reservation:
        return booked(Kind.HOTEL)

    @activity.defn(name="book_flight")
    async def book_flight(req: ReserveRequest) -> Reservation:
        raise ApplicationError("no seats left", type=ErrorType.SOLD_OUT.value)

    @activity.defn(name="undo_book_car")
    async def undo_book_car(req: CancelRequest) -> CancelResult:
        car.calls += 1
        car.undo_calls.append("book_car")
        car.started.set()
        if car.mode == "gate":
            await car.gate.wait()
        elif car.mode == "fail":
            raise ApplicationError("car provider cannot cancel", type=ErrorType.PROVIDER_UNAVAILABLE.value)
        return CancelResult(kind=Kind.CAR, idempotency_key=req.idempotency_key, outcome="cancelled")

    @activity.defn(name="undo_book_hotel")
    async def undo_book_hotel(req: CancelRequest) -> CancelResult:
        car.undo_calls.append("book_hotel")
        return CancelResult(kind=Kind.HOTEL, idempotency_key=req.idempotency_key, outcome="cancelled")

    @activity.defn(name="undo_book_flight")
    async def undo_book_flight(req: CancelRequest) -> CancelResult:
        car.undo_calls.append("book_flight")
        return CancelResult(kind=Kind.FLIGHT, idempotency_key=req.idempotency_key, outcome="not_booked")

    return [book_car, book_hotel, book_flight, undo_book_car, undo_book_hotel, undo_book_flight]


@dataclass
class Stuck:
    handle: WorkflowHandle[Any, Any]
    car: CarUndo
    status: BookingStatus


@pytest_asyncio.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this module's own. These tests need it to skip
    days; the Java test server stops skipping for good once another test has
    left an activity running on it (tests/workflow/test_saga.py does, on purpose)."""
    async with own_time_skipping_env(data_converter()) as env:
        yield env


@pytest_asyncio.fixture
async def ts_worker(ts_env: WorkflowEnvironment) -> AsyncIterator[tuple[str, CarUndo]]:
    car = CarUndo()
    queue = f"tq-{uuid.uuid4().hex}"
    activities = mock_activities(car)
    async with booking_workers(ts_env.client, queue, activities):
        yield queue, car


async def start_stuck(env: WorkflowEnvironment, queue: str, car: CarUndo, **extra: Any) -> Stuck:
    req = make_request(Scenario.HAPPY, Mode.SEQUENTIAL)
    if extra:
        req = req.model_copy(update=extra)
    handle = await start_booking(env.client, req, task_queue=queue, search_attributes=False)
    status = await wait_for_saga_status(handle, SagaStatus.NEEDS_ATTENTION)
    return Stuck(handle, car, status)


async def failure_of(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def event_types(handle: WorkflowHandle[Any, Any]) -> list[int]:
    return [e.event_type for e in (await handle.fetch_history()).events]


async def test_a_failed_undo_waits_for_an_operator_with_the_outstanding_list(
    ts_env: WorkflowEnvironment, ts_worker: tuple[str, CarUndo]
) -> None:
    queue, car = ts_worker
    stuck = await start_stuck(ts_env, queue, car)
    status = stuck.status
    assert status.outstanding == ["book_car"]
    assert status.attention is not None
    [held] = status.attention.outstanding
    assert (held.step, held.confirmation, held.undo_error_type) == ("book_car", "CAR-1", "ProviderUnavailable")
    assert held.undo_attempts == 3  # the whole test-sized budget
    assert status.attention.deadline - status.attention.since == timedelta(days=7)
    assert {s.name: s.state for s in status.steps}["book_hotel"] is StepState.COMPENSATED
    description = await stuck.handle.describe()
    assert description.status is not None and description.status.name == "RUNNING"
    # Stable undo ids, so that `temporal activity pause -a undo-book_car` can name it.
    history = await stuck.handle.fetch_history()
    ids = {
        e.activity_task_scheduled_event_attributes.activity_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    assert {"undo-book_car", "undo-book_hotel"} <= ids


async def test_the_deadline_closes_it_as_rollback_incomplete(
    ts_env: WorkflowEnvironment, ts_worker: tuple[str, CarUndo]
) -> None:
    queue, car = ts_worker
    stuck = await start_stuck(ts_env, queue, car, attention_deadline=timedelta(hours=2))
    failure = await failure_of(stuck.handle)  # the server skips the two hours
    assert failure.type == ErrorType.ROLLBACK_INCOMPLETE.value
    assert "still held: book_car (CAR-1)" in failure.message
    assert failure.details[0]["outstanding"][0]["step"] == "book_car"
    status = await fetch_status(ts_env.client, stuck.handle)
    assert status.status is SagaStatus.ROLLBACK_INCOMPLETE and status.outstanding == ["book_car"]


async def test_a_retry_that_succeeds_rolls_back_with_the_audit_trail(
    ts_env: WorkflowEnvironment, ts_worker: tuple[str, CarUndo]
) -> None:
    queue, car = ts_worker
    stuck = await start_stuck(ts_env, queue, car)
    calls_before = car.calls
    car.mode = "ok"  # the provider is back
    result = await retry_compensation(stuck.handle, operator="grace", note="car API is back")
    assert result.outcomes == {"book_car": "compensated"} and result.outstanding == []
    assert result.status is SagaStatus.ROLLED_BACK
    assert car.calls == calls_before + 1  # a fresh budget, and it took one attempt

    failure = await failure_of(stuck.handle)
    assert failure.type == ErrorType.BOOKING_ROLLED_BACK.value
    details = failure.details[0]
    assert sorted(details["compensated"]) == ["book_car", "book_hotel"]
    [action] = details["operator_actions"]
    assert (action["operator"], action["action"], action["note"]) == ("grace", "retry_compensation", "car API is back")
    assert "grace" in failure.message
    status = await fetch_status(ts_env.client, stuck.handle)
    assert status.status is SagaStatus.ROLLED_BACK and status.outstanding == []
    assert [(a.operator, a.steps, a.outcomes) for a in status.audit] == [
        ("grace", ["book_car"], {"book_car": "compensated"})
    ]


async def test_a_retry_that_fails_again_stays_outstanding(
    ts_env: WorkflowEnvironment, ts_worker: tuple[str, CarUndo]
) -> None:
    queue, car = ts_worker
    stuck = await start_stuck(ts_env, queue, car)
    result = await retry_compensation(stuck.handle, operator="grace", note="try once more", steps=["book_car"])
    assert result.outcomes == {"book_car": "compensation-failed"}
    assert result.status is SagaStatus.NEEDS_ATTENTION and result.outstanding == ["book_car"]
    status = await fetch_status(ts_env.client, stuck.handle)
    assert status.status is SagaStatus.NEEDS_ATTENTION
    assert status.attention is not None and status.attention.outstanding[0].undo_attempts == 3
    await resolve(stuck.handle, step="book_car", operator="grace", note="cancelled by phone, ref 7")
    failure = await failure_of(stuck.handle)
    assert failure.type == ErrorType.BOOKING_ROLLED_BACK.value
    assert [a["action"] for a in failure.details[0]["operator_actions"]] == ["retry_compensation", "resolve"]


async def test_resolve_closes_it_as_rolled_back_and_names_the_operator(
    ts_env: WorkflowEnvironment, ts_worker: tuple[str, CarUndo]
) -> None:
    queue, car = ts_worker
    stuck = await start_stuck(ts_env, queue, car)
    calls_before = car.calls
    result = await resolve(stuck.handle, step="book_car", operator="ops", note="released by phone, ref 123")
    assert result.outcomes == {"book_car": "resolved"} and result.status is SagaStatus.ROLLED_BACK
    failure = await failure_of(stuck.handle)
    assert failure.type == ErrorType.BOOKING_ROLLED_BACK.value
    assert failure.details[0]["resolved"] == ["book_car"]
    assert failure.details[0]["operator_actions"][0]["operator"] == "ops"
    assert car.calls == calls_before  # resolving runs no undo
    status = await fetch_status(ts_env.client, stuck.handle)
    assert {s.name: s.state for s in status.steps}["book_car"] is StepState.RESOLVED


@pytest.mark.parametrize(
    ("update", "arg", "message"),
    [
        ("resolve", {"step": "book_boat", "operator": "ops", "note": "x"}, "unknown step 'book_boat'"),
        ("resolve", {"step": "book_hotel", "operator": "ops", "note": "x"}, "not outstanding (it is compensated)"),
        ("resolve", {"step": "book_car", "operator": "ops", "note": ""}, "note must say why"),
        ("resolve", {"step": "book_car", "operator": "", "note": "x"}, "operator must name"),
        ("resolve", {"step": "", "operator": "ops", "note": "x"}, "step must name"),
        ("retry_compensation", {"steps": ["book_flight"], "operator": "ops", "note": "x"}, "not outstanding"),
        ("retry_compensation", {"steps": [], "operator": "ops", "note": "x"}, "name at least one step"),
        ("retry_compensation", {"steps": None, "operator": "ops", "note": "x", "stpes": 1}, "stpes"),
    ],
)
async def test_the_validators_reject_bad_updates_and_nothing_reaches_history(
    ts_env: WorkflowEnvironment, ts_worker: tuple[str, CarUndo], update: str, arg: dict[str, Any], message: str
) -> None:
    queue, car = ts_worker
    stuck = await start_stuck(ts_env, queue, car)
    before = await event_types(stuck.handle)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await stuck.handle.execute_update(update, arg)
    assert message in rejection_message(caught.value)
    # A typed refusal that says sending it again cannot help (a ValueError read as retryable).
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert (cause.type, cause.non_retryable) == (ErrorType.UPDATE_REJECTED.value, True)
    after = await event_types(stuck.handle)
    assert after[: len(before)] == before
    # No Update event: only the test server's non-speculative workflow task
    # bookkeeping may follow (the real server writes nothing; see the dev-server test).
    assert set(after[len(before) :]) <= WORKFLOW_TASK_EVENTS
    assert (await fetch_status(ts_env.client, stuck.handle)).status is SagaStatus.NEEDS_ATTENTION


async def test_updates_are_rejected_in_any_other_state(
    ts_env: WorkflowEnvironment, ts_worker: tuple[str, CarUndo]
) -> None:
    queue, car = ts_worker
    car.mode = "gate"  # the first undo hangs: the saga is COMPENSATING
    handle = await start_booking(
        ts_env.client, make_request(Scenario.HAPPY, Mode.SEQUENTIAL), task_queue=queue, search_attributes=False
    )
    await car.started.wait()
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await resolve(handle, step="book_car", operator="ops", note="too early")
    assert "is COMPENSATING, not NEEDS_ATTENTION" in rejection_message(caught.value)
    car.gate.set()
    failure = await failure_of(handle)
    assert failure.type == ErrorType.BOOKING_ROLLED_BACK.value
    assert "operator_actions" not in failure.details[0]


async def test_cancel_while_waiting_ends_cancelled_and_still_lists_what_is_held(
    ts_env: WorkflowEnvironment, ts_worker: tuple[str, CarUndo]
) -> None:
    queue, car = ts_worker
    stuck = await start_stuck(ts_env, queue, car)
    await stuck.handle.cancel()
    with pytest.raises(WorkflowFailureError) as caught:
        await stuck.handle.result()
    assert isinstance(caught.value.cause, CancelledError)
    status = await fetch_status(ts_env.client, stuck.handle)
    assert status.status is SagaStatus.CANCELLED
    assert status.outstanding == ["book_car"]  # never claims a rollback that did not happen
    assert status.failure is not None and "still held" in status.failure.message


async def test_an_update_arriving_during_a_retry(ts_env: WorkflowEnvironment, ts_worker: tuple[str, CarUndo]) -> None:
    queue, car = ts_worker
    stuck = await start_stuck(ts_env, queue, car)
    car.mode, car.started = "gate", asyncio.Event()
    retry = asyncio.ensure_future(retry_compensation(stuck.handle, operator="grace", note="provider is back"))
    await car.started.wait()  # the retried undo is running now
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await resolve(stuck.handle, step="book_car", operator="ops", note="done by phone")
    assert "its undo is running right now" in rejection_message(caught.value)
    with pytest.raises(WorkflowUpdateFailedError):
        await retry_compensation(stuck.handle, operator="ops", note="again", steps=["book_car"])
    # Mid-retry nothing is outstanding, yet the run must not close before the retry decides.
    assert (await fetch_status(ts_env.client, stuck.handle)).status is SagaStatus.NEEDS_ATTENTION
    car.gate.set()
    result = await retry
    assert result.outcomes == {"book_car": "compensated"}
    failure = await failure_of(stuck.handle)
    assert failure.type == ErrorType.BOOKING_ROLLED_BACK.value
    assert [a["operator"] for a in failure.details[0]["operator_actions"]] == ["grace"]
