"""A booking whose hotel costs a night to cancel: the unwind holds that undo for an operator.

The booking workflow on a time-skipping server of this module's own (the
deadline tests skip hours), with mock providers: the flight is sold out, the
hotel's reservation names a cancellation fee. Sequential mode, as in
test_operator.py; the saga core's parallel behaviour is in test_saga_approval.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from saga import StepState, UndoDecision
from tests.conftest import booking_workers, make_request, own_time_skipping_env, wait_for_saga_status
from trip import UPDATE_APPROVE_UNDO, UPDATE_RESOLVE
from trip.errors import ErrorType
from trip.models import (
    CancellationFee,
    CancelRequest,
    CancelResult,
    Kind,
    Mode,
    Money,
    Reservation,
    ReserveRequest,
    Scenario,
)
from trip.status import BookingStatus, SagaStatus
from wiring.codec import data_converter
from wiring.live_status import fetch_status
from wiring.start import start_booking
from wiring.updates import decide_undo, rejection_message

FEE = Decimal("150.00")


@dataclass
class Hotel:
    """When the mock hotel's fee starts to apply, and which undos ran."""

    fee_from: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    undone: list[str] = field(default_factory=list)


def mock_activities(hotel: Hotel) -> list[Any]:
    @activity.defn(name="book_car")
    async def book_car(req: ReserveRequest) -> Reservation:
        return Reservation(kind=Kind.CAR, reservation_id="r-car", confirmation="CAR-1")

    @activity.defn(name="book_hotel")
    async def book_hotel(req: ReserveRequest) -> Reservation:
        fee = CancellationFee(amount=FEE, currency="EUR", applies_from=hotel.fee_from)
        return Reservation(kind=Kind.HOTEL, reservation_id="r-hotel", confirmation="HTL-1", cancellation_fee=fee)

    @activity.defn(name="book_flight")
    async def book_flight(req: ReserveRequest) -> Reservation:
        raise ApplicationError("no seats left", type=ErrorType.SOLD_OUT.value)

    def undo(kind: Kind, fee: Money | None = None) -> Any:
        async def cancel(req: CancelRequest) -> CancelResult:
            hotel.undone.append(kind.value)
            return CancelResult(kind=kind, idempotency_key=req.idempotency_key, outcome="cancelled", fee_charged=fee)

        return activity.defn(name=f"undo_book_{kind.value}")(cancel)

    fee = Money(amount=FEE, currency="EUR")
    return [book_car, book_hotel, book_flight, undo(Kind.CAR), undo(Kind.HOTEL, fee), undo(Kind.FLIGHT)]


@pytest_asyncio.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    async with own_time_skipping_env(data_converter()) as env:
        yield env


@pytest_asyncio.fixture
async def booking(ts_env: WorkflowEnvironment) -> AsyncIterator[tuple[Any, Hotel]]:
    hotel = Hotel()
    queue = f"tq-{uuid.uuid4().hex}"
    async with booking_workers(ts_env.client, queue, mock_activities(hotel)):

        async def start(**extra: Any) -> WorkflowHandle[Any, Any]:
            req = make_request(Scenario.HOTEL_CANCEL_FEE, Mode.SEQUENTIAL).model_copy(update=extra)
            return await start_booking(ts_env.client, req, task_queue=queue, search_attributes=False)

        yield start, hotel


async def rolled_back(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == ErrorType.BOOKING_ROLLED_BACK.value
    return cause


async def test_the_hotel_undo_waits_for_approval_and_approve_undo_rolls_back_with_the_fee(
    ts_env: WorkflowEnvironment, booking: tuple[Any, Hotel]
) -> None:
    start, hotel = booking
    handle = await start()
    status: BookingStatus = await wait_for_saga_status(handle, SagaStatus.AWAITING_UNDO_APPROVAL)
    [held] = status.undo_approvals
    assert (held.step, held.confirmation, held.fee.amount, held.fee.currency) == ("book_hotel", "HTL-1", FEE, "EUR")
    assert held.deadline is not None and held.deadline - held.since == timedelta(hours=12)
    assert held.default is UndoDecision.APPROVE and held.decision is None
    # Sequential: the car's undo waits behind the hotel's decision.
    assert hotel.undone == []
    states = {s.name: s.state for s in status.steps}
    assert states["book_hotel"] is StepState.AWAITING_APPROVAL and states["book_car"] is StepState.SUCCEEDED

    result = await decide_undo(handle, approve=True, step="book_hotel", operator="grace", note="the guest agreed")
    assert result.outcomes == {"book_hotel": "compensated"}
    failure = await rolled_back(handle)
    assert hotel.undone == ["hotel", "car"]
    [details] = failure.details
    assert details["fees_paid"] == [{"step": "book_hotel", "amount": "150.00", "currency": "EUR"}]
    assert details["kept"] == []
    [action] = details["operator_actions"]
    assert (action["operator"], action["action"], action["note"]) == ("grace", "approve_undo", "the guest agreed")
    assert (action["cost"], action["currency"]) == ("150.00", "EUR")
    assert "cancellation fees paid: book_hotel 150.00 EUR" in failure.message
    final = await fetch_status(ts_env.client, handle)
    assert final.status is SagaStatus.ROLLED_BACK
    assert {s.name: s.undo_fee for s in final.steps}["book_hotel"] == Money(amount=FEE, currency="EUR")


async def test_keep_leaves_the_hotel_booked_and_the_run_still_rolls_back(booking: tuple[Any, Hotel]) -> None:
    start, hotel = booking
    handle = await start()
    await wait_for_saga_status(handle, SagaStatus.AWAITING_UNDO_APPROVAL)
    result = await decide_undo(handle, approve=False, step="book_hotel", operator="grace", note="guest will travel")
    assert result.outcomes == {"book_hotel": "kept"}
    failure = await rolled_back(handle)
    assert hotel.undone == ["car"]
    assert failure.details[0]["kept"] == ["book_hotel"] and failure.details[0]["fees_paid"] == []
    assert "kept, not cancelled, by decision: book_hotel" in failure.message


@pytest.mark.parametrize("default", list(UndoDecision))
async def test_past_the_approval_deadline_the_booking_default_applies(
    booking: tuple[Any, Hotel], default: UndoDecision
) -> None:
    start, hotel = booking
    handle = await start(undo_approval_deadline=timedelta(hours=2), undo_approval_default=default)
    failure = await rolled_back(handle)  # the server skips the two hours
    assert ("hotel" in hotel.undone) is (default is UndoDecision.APPROVE)
    [action] = failure.details[0]["operator_actions"]
    assert action["operator"] == "deadline" and action["cost"] == "150.00"
    assert failure.details[0]["kept"] == ([] if default is UndoDecision.APPROVE else ["book_hotel"])


@pytest.mark.parametrize(
    ("extra", "fee_from"),
    [
        ({"undo_fee_threshold": Decimal(150)}, None),  # not above the threshold
        ({}, datetime(2999, 1, 1, tzinfo=UTC)),  # the fee does not apply yet
    ],
)
async def test_a_fee_at_or_below_the_threshold_or_not_yet_due_is_undone_at_once(
    booking: tuple[Any, Hotel], extra: dict[str, Any], fee_from: datetime | None
) -> None:
    start, hotel = booking
    if fee_from is not None:
        hotel.fee_from = fee_from
    failure = await rolled_back(await start(**extra))
    assert hotel.undone == ["hotel", "car"]
    assert "operator_actions" not in failure.details[0]


async def test_decisions_are_validated_and_refusals_leave_no_trace(booking: tuple[Any, Hotel]) -> None:
    start, _ = booking
    handle = await start()
    await wait_for_saga_status(handle, SagaStatus.AWAITING_UNDO_APPROVAL)
    ok = {"step": "book_hotel", "operator": "grace", "note": "why"}
    for name, payload, reason in [
        (UPDATE_APPROVE_UNDO, {**ok, "note": ""}, "note must say why"),
        (UPDATE_APPROVE_UNDO, {**ok, "operator": ""}, "operator must name who is acting"),
        (UPDATE_APPROVE_UNDO, {**ok, "step": "book_car"}, "step 'book_car' is not awaiting approval"),
        (UPDATE_APPROVE_UNDO, {**ok, "steps": ["book_hotel"]}, "unknown field(s) steps"),
        (UPDATE_RESOLVE, ok, "this booking is AWAITING_UNDO_APPROVAL, not NEEDS_ATTENTION"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(name, payload)
        assert reason in rejection_message(refused.value), name
    await decide_undo(handle, approve=True, step="book_hotel", operator="grace", note="ok")
    failure = await rolled_back(handle)
    assert [a["action"] for a in failure.details[0]["operator_actions"]] == ["approve_undo"]
