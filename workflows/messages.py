"""The words a booking ends with, and why a request was refused: pure functions.

The workflow decides; these only say it. Each takes what it names and returns
text (or the refusal's reason), so a unit test can read every sentence without
a Temporal server. No I/O and no clocks: the workflow imports this inside its
sandbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from saga import StepRecord, StepState
from trip.callbacks import CallbackRefusal
from trip.errors import ErrorType
from trip.models import CancelResult, CarRequest, FlightRequest, HotelRequest, Kind
from trip.status import ConfirmationView, Decision, FailureView, OperatorAction, OutstandingStep, SagaStatus
from workflows.render import split_undone


def describe(details: object) -> str:
    """One step's booking (a car, hotel or flight request), as an activity summary shows it."""
    if isinstance(details, CarRequest):
        return f"car in {details.city}, {details.pickup} to {details.dropoff}"
    if isinstance(details, HotelRequest):
        return f"hotel in {details.city}, {details.check_in} to {details.check_out}"
    assert isinstance(details, FlightRequest)
    return f"flight {details.origin} to {details.destination} on {details.date}"


def failure_of(err: BaseException, record: StepRecord | None) -> FailureView:
    """What started an unwind: the step that failed first, or else the saga's own decision."""
    # No failed step: the saga itself decided (declined, or no answer in time).
    own = err if isinstance(err, ApplicationError) and record is None else None
    return FailureView(
        step=record.name if record else None,
        type=(record.error_type if record else None) or (own.type if own else None) or type(err).__name__,
        message=(record.error if record else None) or (own.message if own else None) or str(err),
    )


def after(failure: FailureView | None) -> str:
    """The failure that started an unwind, for a message about what ended it."""
    if failure is None or failure.type == "Cancelled":
        return ""
    return f", after {failure.step or 'a step'} failed ({failure.type}: {failure.message})"


def rolled_back(
    failure: FailureView,
    *,
    cancelled: Sequence[str],
    not_booked: Sequence[str],
    resolved: Sequence[str] = (),
    actions: Sequence[OperatorAction] = (),
    kept: Sequence[str] = (),
    fees: Sequence[str] = (),
) -> str:
    """Why the trip was not booked, and what became of each step.

    A clause with nothing to list is left out rather than ending in "none".
    """
    lines = [f"Cancelled: {', '.join(cancelled) or 'nothing'}"]
    if not_booked:
        lines.append(f"nothing to undo (never booked, or the hold had lapsed): {', '.join(not_booked)}")
    if resolved:
        lines.append(f"resolved by an operator: {', '.join(resolved)}")
    if kept:
        lines.append(f"kept, not cancelled, by decision: {', '.join(kept)}")
    if fees:
        lines.append(f"cancellation fees paid: {', '.join(fees)}")
    text = (
        f"Trip not booked: {failure.step or 'the booking'} failed ({failure.type}: {failure.message}). "
        + "; ".join(lines)
        + "."
    )
    if actions:
        who = ", ".join(f"{a.action} by {a.operator} ({a.note})" for a in actions)
        text += f" Operator actions: {who}."
    return text


def saga_error(error: ErrorType, failure: FailureView, message: str, **details: Any) -> ApplicationError:
    """The typed, non-retryable failure a saga ends with; details name the failure that started the unwind."""
    cause = {"failed_step": failure.step, "cause_type": failure.type, "cause": failure.message}
    return ApplicationError(message, {**cause, **details}, type=error.value, non_retryable=True)


def rolled_back_error(
    failure: FailureView, records: Sequence[StepRecord], audit: Sequence[OperatorAction]
) -> ApplicationError:
    """``BookingRolledBack``: every reservation released, by the saga or by an operator's hand."""
    compensated = [r for r in records if r.state is StepState.COMPENSATED]
    released, not_booked = split_undone(compensated)
    details: dict[str, Any] = {"compensated": [r.name for r in compensated], "cancelled": released}
    details["not_booked"] = not_booked
    resolved: list[str] = []
    if audit:
        details["resolved"] = resolved = [r.name for r in records if r.state is StepState.RESOLVED]
        details["operator_actions"] = [a.model_dump(mode="json") for a in audit]
    kept = [r.name for r in records if r.state is StepState.KEPT]
    paid = [(r.name, r.undo_result.fee_charged) for r in compensated if isinstance(r.undo_result, CancelResult)]
    fees = [{"step": name, **fee.model_dump(mode="json")} for name, fee in paid if fee is not None]
    if kept or fees:
        # Only runs whose undo was held for approval have these: older results keep their shape.
        details["kept"], details["fees_paid"] = kept, fees
    text = rolled_back(
        failure,
        cancelled=released,
        not_booked=not_booked,
        resolved=resolved,
        actions=audit,
        kept=kept,
        fees=[f"{f['step']} {f['amount']} {f['currency']}" for f in fees],
    )
    return saga_error(ErrorType.BOOKING_ROLLED_BACK, failure, text, **details)


def rollback_incomplete_error(
    failure: FailureView, held: Sequence[OutstandingStep], audit: Sequence[OperatorAction]
) -> ApplicationError:
    """``RollbackIncomplete``: the reservations still held when the rollback gave up."""
    fields = {"step", "confirmation", "undo_error_type", "undo_error"}
    details: dict[str, Any] = {"outstanding": [h.model_dump(include=fields) for h in held]}
    if audit:
        details["operator_actions"] = [a.model_dump(mode="json") for a in audit]
    return saga_error(ErrorType.ROLLBACK_INCOMPLETE, failure, rollback_incomplete(failure, held), **details)


def trip_incomplete_error(ticket: str | None, held: Sequence[OutstandingStep]) -> ApplicationError:
    """``TripIncomplete``: past the pivot, steps still not done at the attention deadline."""
    return ApplicationError(
        trip_incomplete(ticket, held),
        {"outstanding": [h.model_dump(mode="json") for h in held], "ticket": ticket},
        type=ErrorType.TRIP_INCOMPLETE.value,
        non_retryable=True,
    )


def rollback_incomplete(failure: FailureView, held: Sequence[OutstandingStep]) -> str:
    """The rollback gave up with reservations still held: which, and who must act."""
    listing = "; ".join(f"{h.step}{f' ({h.confirmation})' if h.confirmation else ''}: {h.undo_error}" for h in held)
    return (
        f"Rollback incomplete after {failure.step or 'cancellation'} failed: still held: {listing}. "
        "An operator must release these reservations."
    )


def not_done(held: Sequence[OutstandingStep]) -> str:
    """Past the pivot: the steps still not done, with why."""
    return ", ".join(f"{h.step} ({h.error_type}: {h.error})" for h in held)


def trip_incomplete(ticket: str | None, held: Sequence[OutstandingStep]) -> str:
    return (
        f"Trip incomplete: the ticket {ticket} is issued, but these steps were still not done "
        f"at the attention deadline: {not_done(held)}. An operator must finish them by hand."
    )


def cancelled_with_steps_left(past_pivot: bool, ticket: str | None, held: Sequence[OutstandingStep]) -> str:
    """A cancel that ended a run waiting for an operator: what is left for a person."""
    listing = ", ".join(h.step for h in held)
    if past_pivot:
        return (
            f"cancelled past the point of no return: ticket {ticket} stands; "
            f"not done, an operator must finish: {listing}"
        )
    return f"the booking was cancelled; still held, an operator must release: {listing}"


def cancelled_while_undoing(failure: FailureView | None) -> str:
    return "the booking was cancelled while it was being undone" + after(failure)


def unanswered(decision: Decision, note: str, within: timedelta) -> ApplicationError:
    """The cause of unwinding a held trip: the traveller declined, or nobody answered."""
    if decision is Decision.DECLINED:
        return ApplicationError(
            f"the traveller declined the held trip{f': {note}' if note else ''}",
            type=ErrorType.DECLINED.value,
            non_retryable=True,
        )
    return ApplicationError(
        f"nobody confirmed the held trip within {within}",
        type=ErrorType.CONFIRMATION_TIMEOUT.value,
        non_retryable=True,
    )


def decision_refusal(what: str, *, held: bool, status: SagaStatus, confirmation: ConfirmationView | None) -> str | None:
    """Why a ``confirm`` / ``decline`` (``what``) cannot be taken now; ``None`` if it can."""
    if confirmation is None:
        if not held:
            return f"this booking was not held for confirmation: there is nothing to {what}"
        if status is SagaStatus.RUNNING:
            return f"this booking's holds are not all placed yet: {what} once it is awaiting confirmation"
        return f"this booking is {status.value}: there is nothing to {what}"
    if confirmation.decision is not None:
        return f"this booking was already {confirmation.decision.value}: there is nothing to {what}"
    if status is not SagaStatus.AWAITING_CONFIRMATION:
        # e.g. cancelled while it waited: the holds are being released.
        return f"this booking is {status.value}: there is nothing to {what}"
    return None


def update_rejected(reason: str) -> ApplicationError:
    """What an Update validator raises: the reason, as a typed, non-retryable, benign refusal.

    A plain ``ValueError`` reaches callers as an application failure that the
    Temporal CLI shows as retryable; nothing about a refused decision or
    operator action changes by sending it again.
    """
    return ApplicationError(
        reason, type=ErrorType.UPDATE_REJECTED.value, non_retryable=True, category=ApplicationErrorCategory.BENIGN
    )


def operator_refusal(
    what: str,
    *,
    status: SagaStatus,
    operator: str,
    note: str,
    expected: SagaStatus = SagaStatus.NEEDS_ATTENTION,
) -> str | None:
    """Why an operator's ``what`` (retry, resolve, approve, keep) cannot be taken now; ``None`` if it can.

    ``expected`` is the status in which the action makes sense.
    """
    if status is not expected:
        return f"this booking is {status.value}, not {expected.value}: there is nothing to {what}"
    if not operator:
        return "operator must name who is acting"
    if not note:
        return "note must say why: it goes into the audit trail"
    return None


def unknown_fields(extra: dict[str, object] | None, known: Sequence[str]) -> str | None:
    """An Update's input with fields it does not take: name them, and the ones it does."""
    if not extra:
        return None
    fields = "the only field is" if len(known) == 1 else "the fields are"
    return f"unknown field(s) {', '.join(sorted(extra))}; {fields}: {', '.join(known)}"


def confirmation_timed_out(kind: Kind, within: timedelta) -> ApplicationError:
    """A waiting step's deadline passed: a benign, typed failure of that step (it unwinds the saga)."""
    return ApplicationError(
        f"the {kind.value} provider did not confirm within {within.total_seconds():g} s",
        type=ErrorType.CALLBACK_TIMED_OUT.value,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


def callback_refused(refusal: CallbackRefusal, reason: str) -> ApplicationError:
    """What ``provider_confirmed``'s validator raises; the receiver maps the type to an HTTP status."""
    return ApplicationError(reason, type=refusal.value, non_retryable=True, category=ApplicationErrorCategory.BENIGN)
