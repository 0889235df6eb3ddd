"""A provider that confirms later: the booking workflow on the time-skipping server.

A mock provider answers a booking ``pending`` (the 202 of ``flight-async``); the
step then waits for the ``provider_confirmed`` Update (what the web app's
callback receiver sends) until its deadline, a durable timer the server skips.
"""

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
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from saga import StepState
from tests.conftest import booking_workers, make_request, own_time_skipping_env, wait_until
from trip.callbacks import CallbackAccepted, CallbackRefusal, ProviderConfirmation
from trip.errors import ErrorType
from trip.models import CancelRequest, CancelResult, Kind, Mode, Reservation, ReserveRequest, Scenario
from trip.status import BookingStatus, SagaStatus
from trip.steps import step
from wiring.start import start_booking
from workflows.booking import BookingWorkflow
from workflows.policies import STEP_POLICIES


@dataclass
class Providers:
    #: Kinds whose provider answers ``pending``.
    later: set[Kind] = field(default_factory=lambda: {Kind.FLIGHT})
    calls: list[str] = field(default_factory=list)
    #: Undos wait for ``gate`` (and set ``undoing``): keeps a booking compensating.
    undo_waits: bool = False
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    undoing: asyncio.Event = field(default_factory=asyncio.Event)


def mock_activities(p: Providers) -> list[Any]:
    def book(kind: Kind) -> Any:
        @activity.defn(name=step(kind).book)
        async def book_(req: ReserveRequest) -> Reservation:
            p.calls.append(step(kind).book)
            if kind in p.later:
                ref = f"REF-{kind.value}"
                return Reservation(kind=kind, reservation_id="r", confirmation=ref, pending=True, reference=ref)
            return Reservation(kind=kind, reservation_id="r", confirmation=f"{kind.value.upper()}-1")

        return book_

    def undo(kind: Kind) -> Any:
        @activity.defn(name=step(kind).undo)
        async def undo_(req: CancelRequest) -> CancelResult:
            p.calls.append(step(kind).undo)
            if p.undo_waits:
                p.undoing.set()
                await p.gate.wait()
            return CancelResult(kind=kind, idempotency_key=req.idempotency_key, outcome="cancelled")

        return undo_

    return [*(book(k) for k in Kind), *(undo(k) for k in Kind)]


@pytest_asyncio.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    # Its own server, as test_hold's: it must skip an hour.
    async with own_time_skipping_env(pydantic_data_converter) as env:
        yield env


@pytest_asyncio.fixture
async def providers() -> Providers:
    return Providers()


@pytest_asyncio.fixture
async def queue(ts_env: WorkflowEnvironment, providers: Providers) -> AsyncIterator[str]:
    name = f"tq-{uuid.uuid4().hex}"
    async with booking_workers(ts_env.client, name, mock_activities(providers)):
        yield name


async def start_waiting(
    env: WorkflowEnvironment, queue: str, mode: Mode, *, waiting: int = 1, **extra: Any
) -> tuple[WorkflowHandle[Any, Any], BookingStatus]:
    req = make_request(Scenario.HAPPY, mode).model_copy(update=extra)
    handle = await start_booking(env.client, req, task_queue=queue, search_attributes=False)
    status = await wait_until(
        lambda: handle.query(BookingWorkflow.status),
        lambda s: len(s.waiting) == waiting,
        what="the step to wait for its callback",
    )
    return handle, status


def callback(kind: Kind, reference: str, confirmation: str = "FLT-FROM-CALLBACK") -> ProviderConfirmation:
    return ProviderConfirmation(kind=kind, reference=reference, confirmation=confirmation, delivery_id="d-1")


async def refusal(handle: WorkflowHandle[Any, Any], cb: ProviderConfirmation) -> str | None:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(BookingWorkflow.provider_confirmed, cb, id=uuid.uuid4().hex)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return cause.type


@pytest.mark.parametrize("mode", list(Mode))
async def test_a_callback_before_the_deadline_completes_the_step_with_its_confirmation(
    ts_env: WorkflowEnvironment, queue: str, mode: Mode
) -> None:
    handle, status = await start_waiting(ts_env, queue, mode, async_deadline_s=600)
    [waiting] = status.waiting
    assert (waiting.step, waiting.reference) == ("book_flight", "REF-flight")
    assert waiting.deadline - waiting.since == timedelta(seconds=600)
    assert {s.name: s.state for s in status.steps}["book_flight"] is StepState.WAITING
    assert status.status is SagaStatus.RUNNING

    # Signed, but for another step's reference: refused, and nothing changes.
    assert await refusal(handle, callback(Kind.FLIGHT, "REF-someone-else")) == CallbackRefusal.WRONG_REFERENCE
    assert await refusal(handle, callback(Kind.HOTEL, "REF-flight")) == CallbackRefusal.NOT_WAITING
    still = await handle.query(BookingWorkflow.status)
    assert [w.step for w in still.waiting] == ["book_flight"]

    accepted = await handle.execute_update(
        BookingWorkflow.provider_confirmed, callback(Kind.FLIGHT, "REF-flight"), id="delivery-1"
    )
    assert isinstance(accepted, CallbackAccepted) and accepted.step == "book_flight"
    result = await handle.result()
    assert result.confirmations["flight"] == "FLT-FROM-CALLBACK"
    final = await handle.query(BookingWorkflow.status)
    assert final.status is SagaStatus.COMPLETED and final.waiting == []
    assert {s.name: s.state for s in final.steps}["book_flight"] is StepState.SUCCEEDED


@pytest.mark.parametrize("mode", list(Mode))
async def test_past_the_deadline_the_step_fails_and_the_saga_unwinds_the_pending_reservation(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers, mode: Mode
) -> None:
    handle, _ = await start_waiting(ts_env, queue, mode)
    # No callback: awaiting the result lets the server skip to the step's default deadline.
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == ErrorType.BOOKING_ROLLED_BACK.value
    status = await handle.query(BookingWorkflow.status)
    assert status.status is SagaStatus.ROLLED_BACK
    assert status.failure is not None
    assert (status.failure.step, status.failure.type) == ("book_flight", ErrorType.CALLBACK_TIMED_OUT.value)
    assert f"{STEP_POLICIES[Kind.FLIGHT].confirm_within.total_seconds():g} s" in status.failure.message
    # The pending reservation is cancelled like every other one.
    assert {"undo_book_flight", "undo_book_car", "undo_book_hotel"} <= set(providers.calls)
    assert {s.name: s.state for s in status.steps}["book_flight"] is StepState.COMPENSATED


async def test_a_callback_after_the_deadline_is_refused_while_the_saga_unwinds(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    providers.undo_waits = True
    handle, _ = await start_waiting(ts_env, queue, Mode.SEQUENTIAL, async_deadline_s=30)
    result = asyncio.ensure_future(handle.result())  # lets the server skip to the deadline
    await asyncio.wait_for(providers.undoing.wait(), timeout=30)
    assert await refusal(handle, callback(Kind.FLIGHT, "REF-flight")) == CallbackRefusal.PAST_DEADLINE
    providers.gate.set()
    with pytest.raises(WorkflowFailureError):
        await result
    status = await handle.query(BookingWorkflow.status)
    assert status.status is SagaStatus.ROLLED_BACK
    assert "flight" not in status.confirmations


async def test_another_steps_reference_is_refused_as_such_once_the_wait_is_over(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    # Past the deadline or once confirmed, a callback naming a reference this
    # step never had is still for another booking's step (401), not a late one (409).
    providers.undo_waits = True
    handle, _ = await start_waiting(ts_env, queue, Mode.PARALLEL, async_deadline_s=30)
    result = asyncio.ensure_future(handle.result())  # lets the server skip to the deadline
    await asyncio.wait_for(providers.undoing.wait(), timeout=30)
    assert await refusal(handle, callback(Kind.FLIGHT, "REF-someone-else")) == CallbackRefusal.WRONG_REFERENCE
    assert await refusal(handle, callback(Kind.FLIGHT, "REF-flight")) == CallbackRefusal.PAST_DEADLINE
    providers.gate.set()
    with pytest.raises(WorkflowFailureError):
        await result


async def test_a_confirmed_step_refuses_another_steps_reference_as_such(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    providers.later = {Kind.FLIGHT, Kind.HOTEL}
    handle, _ = await start_waiting(ts_env, queue, Mode.PARALLEL, waiting=2, async_deadline_s=600)
    await handle.execute_update(BookingWorkflow.provider_confirmed, callback(Kind.HOTEL, "REF-hotel", "HTL-OK"))
    assert await refusal(handle, callback(Kind.HOTEL, "REF-someone-else")) == CallbackRefusal.WRONG_REFERENCE
    assert await refusal(handle, callback(Kind.HOTEL, "REF-hotel")) == CallbackRefusal.NOT_WAITING
    await handle.execute_update(BookingWorkflow.provider_confirmed, callback(Kind.FLIGHT, "REF-flight"))
    await handle.result()


async def test_in_parallel_two_steps_wait_and_each_callback_completes_its_own(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    providers.later = {Kind.FLIGHT, Kind.HOTEL}
    handle, status = await start_waiting(ts_env, queue, Mode.PARALLEL, waiting=2, async_deadline_s=600)
    assert {w.step for w in status.waiting} == {"book_flight", "book_hotel"}
    # The hotel's reference does not confirm the flight.
    assert await refusal(handle, callback(Kind.FLIGHT, "REF-hotel")) == CallbackRefusal.WRONG_REFERENCE
    await handle.execute_update(BookingWorkflow.provider_confirmed, callback(Kind.HOTEL, "REF-hotel", "HTL-OK"))
    after_one = await handle.query(BookingWorkflow.status)
    assert [w.step for w in after_one.waiting] == ["book_flight"]
    await handle.execute_update(BookingWorkflow.provider_confirmed, callback(Kind.FLIGHT, "REF-flight", "FLT-OK"))
    result = await handle.result()
    assert (result.confirmations["hotel"], result.confirmations["flight"]) == ("HTL-OK", "FLT-OK")


async def test_in_sequence_the_steps_after_a_waiting_one_wait_too(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    """Sequential order is car, hotel, flight: the hotel confirms later and never does."""
    providers.later = {Kind.HOTEL}
    handle, _ = await start_waiting(ts_env, queue, Mode.SEQUENTIAL, async_deadline_s=60)
    assert "book_flight" not in providers.calls
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    status = await handle.query(BookingWorkflow.status)
    assert (status.failure.step if status.failure else None) == "book_hotel"
    assert "book_flight" not in providers.calls
    assert providers.calls[-2:] == ["undo_book_hotel", "undo_book_car"]


async def test_cancelling_a_booking_that_waits_undoes_the_pending_reservation(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    handle, _ = await start_waiting(ts_env, queue, Mode.PARALLEL, async_deadline_s=600)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    status = await handle.query(BookingWorkflow.status)
    assert status.status is SagaStatus.CANCELLED and status.waiting == []
    assert [w.outcome for w in status.waited] == ["cancelled"]
    assert {"undo_book_car", "undo_book_hotel", "undo_book_flight"} <= set(providers.calls)
