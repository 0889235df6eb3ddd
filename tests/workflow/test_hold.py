"""Hold, confirm and ticket: the booking workflow on the time-skipping server,
with mock activities whose answers the test controls.

The saga places three holds, waits for the traveller's ``confirm`` or
``decline``, then issues the ticket (the pivot, never undone) and finalizes the
car and hotel (retriable: a failure waits for an operator, never unwinds).
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
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from saga import StepKind, StepState
from tests.conftest import FAST_RETRY, booking_workers, make_request, own_time_skipping_env, wait_for_saga_status
from trip import UPDATE_CONFIRM
from trip.errors import ErrorType
from trip.models import (
    CancelRequest,
    CancelResult,
    FinalizeRequest,
    FinalizeResult,
    Kind,
    Mode,
    Reservation,
    ReserveRequest,
    Scenario,
    Ticket,
    TicketRequest,
)
from trip.status import BookingStatus, SagaStatus
from trip.steps import step, undone_by
from wiring.live_status import fetch_status
from wiring.outcome import await_outcome
from wiring.start import start_booking
from wiring.updates import decide, rejection_message, resolve, retry_compensation

WITHIN = timedelta(hours=1)


@dataclass
class Providers:
    """What the mock providers answer, and every call they got."""

    #: ok | refuse | flaky (fails ``fail_first`` times with a retryable error, then issues) | gate
    ticket: str = "ok"
    #: ok | broken (every attempt fails, retryably)
    finalize_hotel: str = "ok"
    fail_first: int = 0
    calls: list[str] = field(default_factory=list)
    hold_ttls: list[float | None] = field(default_factory=list)
    ticket_keys: list[str] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    ticketing: asyncio.Event = field(default_factory=asyncio.Event)
    #: book_car waits for ``gate`` (and sets ``booking_car``): keeps a booking open.
    book_car_waits: bool = False
    booking_car: asyncio.Event = field(default_factory=asyncio.Event)
    #: Undos wait for ``gate`` (and set ``undoing``): keeps a booking compensating.
    undo_waits: bool = False
    undoing: asyncio.Event = field(default_factory=asyncio.Event)

    def undos(self) -> list[str]:
        return [c for c in self.calls if undone_by(c) is not None]


def mock_activities(p: Providers) -> list[Any]:
    def book(kind: Kind) -> Any:
        @activity.defn(name=step(kind).book)
        async def book_(req: ReserveRequest) -> Reservation:
            p.calls.append(step(kind).book)
            p.hold_ttls.append(req.hold_ttl_s)
            if kind is Kind.CAR and p.book_car_waits:
                p.booking_car.set()
                await p.gate.wait()
            return Reservation(kind=kind, reservation_id=f"r-{kind.value}", confirmation=f"{kind.value.upper()}-1")

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

    @activity.defn(name="ticket_flight")
    async def ticket_flight(req: TicketRequest) -> Ticket:
        p.calls.append("ticket_flight")
        p.ticket_keys.append(req.idempotency_key)
        attempt = activity.info().attempt
        if p.ticket == "refuse":
            raise ApplicationError("fare no longer valid", type=ErrorType.TICKETING_REFUSED.value)
        if p.ticket == "garbled" and p.calls.count("ticket_flight") <= p.fail_first:
            # Not a "no": the answer could not be read. A booking's policy ends
            # on it; the pivot's does not, so the server asks again.
            raise ApplicationError(
                "airline answered 200 without a ticket number", type=ErrorType.PROVIDER_PROTOCOL.value
            )
        if p.ticket == "flaky" and attempt <= p.fail_first:
            # From the saga's side this is an unknown outcome: the ticket may or may not exist.
            raise ApplicationError("airline did not answer in time", type=ErrorType.PROVIDER_TIMEOUT.value)
        if p.ticket == "gate":
            p.ticketing.set()
            await p.gate.wait()
        return Ticket(ticket_number="TKT-0001", confirmation="FLIGHT-1", attempt=attempt)

    def finalize(kind: Kind) -> Any:
        @activity.defn(name=step(kind).finalize)
        async def finalize_(req: FinalizeRequest) -> FinalizeResult:
            p.calls.append(f"{step(kind).finalize}")
            if kind is Kind.HOTEL and p.finalize_hotel == "broken":
                raise ApplicationError("hotel cannot confirm the hold", type=ErrorType.PROVIDER_UNAVAILABLE.value)
            return FinalizeResult(
                kind=kind, idempotency_key=req.idempotency_key, confirmation=f"{kind.value.upper()}-OK"
            )

        return finalize_

    kinds = list(Kind)
    return [
        *(book(k) for k in kinds),
        *(undo(k) for k in kinds),
        ticket_flight,
        finalize(Kind.CAR),
        finalize(Kind.HOTEL),
    ]


@pytest_asyncio.fixture(scope="module")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    # This module's own server: it must skip hours, and the Java test server
    # stops skipping once another module has left an activity running on it.
    async with own_time_skipping_env(pydantic_data_converter) as env:
        yield env


@pytest_asyncio.fixture
async def providers() -> Providers:
    return Providers()


@pytest_asyncio.fixture
async def queue(ts_env: WorkflowEnvironment, providers: Providers) -> AsyncIterator[str]:
    name = f"tq-{uuid.uuid4().hex}"
    activities = mock_activities(providers)
    async with booking_workers(ts_env.client, name, activities):
        yield name


async def start_held(
    env: WorkflowEnvironment, queue: str, mode: Mode = Mode.SEQUENTIAL, **extra: Any
) -> tuple[WorkflowHandle[Any, Any], BookingStatus]:
    req = make_request(Scenario.HAPPY, mode).model_copy(update={"confirm_within": WITHIN, **extra})
    handle = await start_booking(env.client, req, task_queue=queue, search_attributes=False)
    return handle, await wait_for_saga_status(handle, SagaStatus.AWAITING_CONFIRMATION)


async def stuck_past_the_pivot(
    env: WorkflowEnvironment, queue: str, providers: Providers
) -> tuple[WorkflowHandle[Any, Any], BookingStatus]:
    """Confirmed and ticketed, but the hotel can never be finalized: NEEDS_ATTENTION."""
    providers.finalize_hotel = "broken"
    handle, _ = await start_held(env, queue)
    await decide(handle, confirm=True)
    return handle, await wait_for_saga_status(handle, SagaStatus.NEEDS_ATTENTION)


async def failure_of(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


@pytest.mark.parametrize("mode", list(Mode))
async def test_confirm_in_time_tickets_and_completes(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers, mode: Mode
) -> None:
    handle, held = await start_held(ts_env, queue, mode)
    assert held.confirmation is not None and held.confirmation.decision is None
    assert held.confirmation.deadline - held.confirmation.since == WITHIN
    kinds = {s.name: s.kind for s in held.steps}
    assert kinds == {
        "book_car": StepKind.COMPENSATABLE,
        "book_hotel": StepKind.COMPENSATABLE,
        "book_flight": StepKind.COMPENSATABLE,
        "ticket_flight": StepKind.PIVOT,
        "finalize_car": StepKind.RETRIABLE,
        "finalize_hotel": StepKind.RETRIABLE,
    }
    assert not held.past_pivot and "ticket_flight" not in providers.calls
    # Each hold outlives the confirmation window at the provider.
    assert providers.hold_ttls and all(t is not None and t > WITHIN.total_seconds() for t in providers.hold_ttls)

    accepted = await decide(handle, confirm=True, note="price is fine")
    assert accepted.decision == "confirmed"
    result = await handle.result()
    assert result.ticket == "TKT-0001"
    status = await fetch_status(ts_env.client, handle)
    assert status.status is SagaStatus.COMPLETED and status.past_pivot
    assert status.confirmation is not None and status.confirmation.decision == "confirmed"
    assert status.confirmation.note == "price is fine"
    states = {s.name: s.state for s in status.steps}
    assert set(states.values()) == {StepState.SUCCEEDED}
    assert providers.undos() == []
    assert providers.ticket_keys == [f"{handle.id}:flight"]


@pytest.mark.parametrize("decision", ["decline", "no answer"])
async def test_decline_or_no_answer_releases_every_hold(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers, decision: str
) -> None:
    handle, _ = await start_held(ts_env, queue)
    if decision == "decline":
        await decide(handle, confirm=False, note="too expensive")
    # "no answer": the time-skipping server jumps the hour-long durable timer.
    failure = await failure_of(handle)
    assert failure.type == ErrorType.BOOKING_ROLLED_BACK.value
    cause = ErrorType.DECLINED if decision == "decline" else ErrorType.CONFIRMATION_TIMEOUT
    assert failure.details[0]["cause_type"] == cause.value
    assert sorted(providers.undos()) == ["undo_book_car", "undo_book_flight", "undo_book_hotel"]
    assert "ticket_flight" not in providers.calls
    status = await fetch_status(ts_env.client, handle)
    assert status.status is SagaStatus.ROLLED_BACK and not status.past_pivot
    assert status.confirmation is not None
    assert status.confirmation.decision == ("declined" if decision == "decline" else "expired")
    assert status.failure is not None and status.failure.type == cause.value


async def test_a_refused_ticket_unwinds_before_the_point_of_no_return(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    providers.ticket = "refuse"
    handle, _ = await start_held(ts_env, queue)
    await decide(handle, confirm=True)
    failure = await failure_of(handle)
    assert failure.type == ErrorType.BOOKING_ROLLED_BACK.value
    assert failure.details[0]["failed_step"] == "ticket_flight"
    assert failure.details[0]["cause_type"] == ErrorType.TICKETING_REFUSED.value
    assert sorted(providers.undos()) == ["undo_book_car", "undo_book_flight", "undo_book_hotel"]
    assert not any(c.startswith("finalize_") for c in providers.calls)


async def test_a_ticket_whose_outcome_is_unknown_is_retried_never_undone(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    # More failures than the steps' retry budget, which is capped at 3 here.
    providers.ticket, providers.fail_first = "flaky", 8
    handle, _ = await start_held(ts_env, queue, retry=FAST_RETRY.model_copy(update={"max_attempts": 3}))
    await decide(handle, confirm=True)
    result = await handle.result()
    assert result.ticket == "TKT-0001"
    assert providers.calls.count("ticket_flight") == 9
    # The same key every time: the airline can tell a retry from a new ticket.
    assert set(providers.ticket_keys) == {f"{handle.id}:flight"}
    assert providers.undos() == []


async def test_a_failure_after_the_pivot_waits_for_an_operator_and_never_undoes(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    handle, stuck = await stuck_past_the_pivot(ts_env, queue, providers)
    assert stuck.past_pivot and stuck.ticket == "TKT-0001"
    assert stuck.outstanding == ["finalize_hotel"]
    assert stuck.attention is not None
    [held] = stuck.attention.outstanding
    assert held.kind is StepKind.RETRIABLE and held.confirmation == "HOTEL-1"
    assert held.error_type == ErrorType.PROVIDER_UNAVAILABLE.value and held.attempts == 5
    assert stuck.compensation_plan == []  # nothing may be undone past the pivot
    assert providers.undos() == []

    # A retry that fails again keeps it outstanding; one that succeeds completes the trip.
    again = await retry_compensation(handle, operator="ops", note="hotel says try again")
    assert again.outcomes == {"finalize_hotel": "failed"} and again.status is SagaStatus.NEEDS_ATTENTION
    providers.finalize_hotel = "ok"
    done = await retry_compensation(handle, operator="ops", note="hotel is back")
    assert done.outcomes == {"finalize_hotel": "succeeded"} and done.status is SagaStatus.COMPLETED
    result = await handle.result()
    assert result.ticket == "TKT-0001"
    status = await fetch_status(ts_env.client, handle)
    assert status.status is SagaStatus.COMPLETED
    assert [a.action for a in status.audit] == ["retry_compensation", "retry_compensation"]
    assert providers.undos() == []


async def test_resolving_a_step_past_the_pivot_completes_the_trip(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    handle, _ = await stuck_past_the_pivot(ts_env, queue, providers)
    result = await resolve(handle, step="finalize_hotel", operator="ops", note="confirmed by phone")
    assert result.status is SagaStatus.COMPLETED
    assert (await handle.result()).ticket == "TKT-0001"
    status = await fetch_status(ts_env.client, handle)
    assert {s.name: s.state for s in status.steps}["finalize_hotel"] is StepState.RESOLVED
    assert providers.undos() == []


async def test_nobody_settling_a_step_past_the_pivot_fails_trip_incomplete(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    providers.finalize_hotel = "broken"
    handle, _ = await start_held(ts_env, queue, attention_deadline=timedelta(days=2))
    await decide(handle, confirm=True)
    failure = await failure_of(handle)  # the server skips the two days
    assert failure.type == ErrorType.TRIP_INCOMPLETE.value
    assert failure.details[0]["ticket"] == "TKT-0001"
    assert [o["step"] for o in failure.details[0]["outstanding"]] == ["finalize_hotel"]
    assert (await fetch_status(ts_env.client, handle)).status is SagaStatus.TRIP_INCOMPLETE
    assert (await await_outcome(ts_env.client, handle)).status is SagaStatus.TRIP_INCOMPLETE  # what the CLI exits 8 on
    assert providers.undos() == []


async def test_confirm_and_decline_are_rejected_in_any_other_state(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    providers.ticket = "gate"
    handle, _ = await start_held(ts_env, queue)
    with pytest.raises(WorkflowUpdateFailedError) as typo:
        await handle.execute_update(UPDATE_CONFIRM, {"notes": "typo"})
    assert "unknown field(s) notes" in rejection_message(typo.value)

    await decide(handle, confirm=True)
    await asyncio.wait_for(providers.ticketing.wait(), timeout=30)
    for confirm in (True, False):
        with pytest.raises(WorkflowUpdateFailedError) as late:
            await decide(handle, confirm=confirm)
        assert "already confirmed" in rejection_message(late.value)
    providers.gate.set()
    await handle.result()


async def test_confirm_is_rejected_on_a_booking_that_was_not_held(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    providers.book_car_waits = True
    handle = await start_booking(
        ts_env.client, make_request(Scenario.HAPPY, Mode.SEQUENTIAL), task_queue=queue, search_attributes=False
    )
    await asyncio.wait_for(providers.booking_car.wait(), timeout=30)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await decide(handle, confirm=True)
    assert "not held for confirmation" in rejection_message(caught.value)
    cause = caught.value.cause  # typed and not retryable: asking again cannot change it
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.non_retryable) == (ErrorType.UPDATE_REJECTED.value, True)
    providers.gate.set()
    result = await handle.result()
    assert result.ticket is None and "ticket_flight" not in providers.calls


async def test_cancel_while_awaiting_confirmation_releases_every_hold(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    handle, _ = await start_held(ts_env, queue)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    assert isinstance(caught.value.cause, CancelledError)
    assert sorted(providers.undos()) == ["undo_book_car", "undo_book_flight", "undo_book_hotel"]
    assert (await fetch_status(ts_env.client, handle)).status is SagaStatus.CANCELLED


async def test_a_cancel_after_confirming_is_too_late_and_the_trip_completes(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    providers.ticket = "gate"
    handle, _ = await start_held(ts_env, queue)
    await decide(handle, confirm=True)
    await asyncio.wait_for(providers.ticketing.wait(), timeout=30)
    await handle.cancel()
    providers.gate.set()
    result = await handle.result()
    assert result.ticket == "TKT-0001"
    assert providers.undos() == []


async def test_cancelling_past_the_pivot_undoes_nothing_and_says_what_is_left(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    handle, _ = await stuck_past_the_pivot(ts_env, queue, providers)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    assert isinstance(caught.value.cause, CancelledError)
    status = await fetch_status(ts_env.client, handle)
    assert status.status is SagaStatus.CANCELLED and status.failure is not None
    assert "point of no return" in status.failure.message and "finalize_hotel" in status.failure.message
    assert providers.undos() == []


async def test_an_unreadable_ticket_answer_is_asked_again_never_undone(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    providers.ticket, providers.fail_first = "garbled", 2
    handle, _ = await start_held(ts_env, queue)
    await decide(handle, confirm=True)
    result = await handle.result()
    assert result.ticket == "TKT-0001"
    assert providers.calls.count("ticket_flight") == 3
    assert providers.undos() == []


async def test_confirm_after_a_cancel_is_rejected_while_the_holds_are_released(
    ts_env: WorkflowEnvironment, queue: str, providers: Providers
) -> None:
    providers.undo_waits = True
    handle, _ = await start_held(ts_env, queue)
    await handle.cancel()
    await asyncio.wait_for(providers.undoing.wait(), timeout=30)
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await decide(handle, confirm=True)
    assert "COMPENSATING" in rejection_message(caught.value)
    providers.gate.set()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert "ticket_flight" not in providers.calls
