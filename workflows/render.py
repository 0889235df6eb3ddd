"""What the Temporal Web UI and the ``status`` query show of a booking: pure functions.

``details`` renders the Markdown the workflow publishes as its current
details, ``booking_status`` the ``status`` query's answer; both read the
``Facts`` the workflow holds. They only read what they are given: no Temporal
calls, no clocks, and they never change the saga.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from saga import Saga, StepKind, StepRecord, StepState
from trip import (
    UPDATE_APPROVE_UNDO,
    UPDATE_CONFIRM,
    UPDATE_DECLINE,
    UPDATE_KEEP,
    UPDATE_RESOLVE,
    UPDATE_RETRY_COMPENSATION,
)
from trip.models import BookingRequest, CancelResult, FinalizeResult, Money, Reservation, Ticket
from trip.status import (
    Attention,
    BookingStatus,
    ConfirmationView,
    FailureView,
    OperatorAction,
    OperatorActionResult,
    OutstandingStep,
    SagaStatus,
    StepView,
    UndoApproval,
    WaitingView,
)
from trip.steps import TICKET, booked_by, finalized_by

#: A provider's answers to an undo that had nothing to release: never booked,
#: or a hold that had already lapsed.
NOT_BOOKED = "not_booked"
NOTHING_TO_RELEASE = frozenset({NOT_BOOKED, "expired"})


def confirmation_of(record: StepRecord) -> str | None:
    result = record.result
    if isinstance(result, Ticket):
        return result.ticket_number
    if isinstance(result, (Reservation, FinalizeResult)):
        return result.confirmation
    return None


def undo_outcome(record: StepRecord) -> str | None:
    undo = record.undo_result
    return undo.outcome if isinstance(undo, CancelResult) else None


def step_view(record: StepRecord) -> StepView:
    return StepView(
        name=record.name,
        state=record.state,
        kind=record.kind,
        attempts=record.attempts,
        confirmation=confirmation_of(record),
        error_type=record.error_type,
        error=record.error,
        undo_attempts=record.undo_attempts,
        undo_outcome=undo_outcome(record),
        undo_error=record.undo_error,
        undo_fee=record.undo_result.fee_charged if isinstance(record.undo_result, CancelResult) else None,
    )


def undo_approval(saga: Saga, record: StepRecord) -> UndoApproval:
    """A step whose undo the saga held because it costs money (``record.approval`` is set)."""
    needed = record.approval
    assert needed is not None and record.approval_since is not None
    return UndoApproval(
        step=record.name,
        confirmation=confirmation_of(record),
        fee=Money(amount=needed.cost, currency=needed.currency),
        reason=needed.reason,
        since=record.approval_since,
        deadline=record.approval_deadline,
        default=saga.approval_default,
        decision=record.decision,
    )


def outstanding_view(record: StepRecord, hold: StepRecord | None) -> OutstandingStep:
    """A step an operator must settle; ``hold`` is the booking a finalize step should confirm."""
    if record.kind is StepKind.RETRIABLE:
        held = hold.result if hold is not None else None
        return OutstandingStep(
            step=record.name,
            kind=record.kind,
            confirmation=held.confirmation if isinstance(held, Reservation) else None,
            error_type=record.error_type,
            error=record.error,
            attempts=record.attempts,
        )
    return OutstandingStep(
        step=record.name,
        confirmation=record.result.confirmation if isinstance(record.result, Reservation) else None,
        undo_error_type=record.undo_error_type,
        undo_error=record.undo_error,
        undo_attempts=record.undo_attempts,
    )


def action_result(saga: Saga, outcomes: dict[str, str]) -> OperatorActionResult:
    """What an operator's action answers: each step's outcome, and the status it leads to."""
    outstanding = [r.name for r in saga.outstanding()]
    # The run closes once nothing is outstanding (and every Update has finished).
    done = SagaStatus.COMPLETED if saga.past_pivot else SagaStatus.ROLLED_BACK
    status = SagaStatus.NEEDS_ATTENTION if outstanding else done
    if saga.awaiting_approval():
        status = SagaStatus.AWAITING_UNDO_APPROVAL
    return OperatorActionResult(status=status, outcomes=outcomes, outstanding=outstanding)


def split_undone(records: Sequence[StepRecord]) -> tuple[list[str], list[str]]:
    """Undone steps: those whose reservation was cancelled, and those the provider never booked."""
    never = [r.name for r in records if undo_outcome(r) in NOTHING_TO_RELEASE]
    return [r.name for r in records if r.name not in never], never


@dataclass(frozen=True)
class Facts:
    """What the workflow holds now, for a status query or the published details."""

    status: SagaStatus
    request: BookingRequest
    saga: Saga
    failure: FailureView | None
    attention: Attention | None
    confirmation: ConfirmationView | None
    cancel_too_late: bool
    #: Steps waiting for a provider's callback (a 202 answer), and those that did.
    waiting: Sequence[WaitingView] = ()
    waited: Sequence[WaitingView] = ()

    @property
    def ticket(self) -> str | None:
        if self.request.confirm_within is None:
            return None
        ticket = self.saga.record(TICKET).result
        return ticket.ticket_number if isinstance(ticket, Ticket) else None

    def held(self) -> list[OutstandingStep]:
        """The steps an operator must settle, each with the hold it concerns."""
        views = []
        for r in self.saga.outstanding():
            finalizes = finalized_by(r.name)
            views.append(outstanding_view(r, self.saga.record(finalizes.book) if finalizes else None))
        return views

    def audit(self) -> list[OperatorAction]:
        return [OperatorAction(**vars(a)) for a in self.saga.actions]


def booking_status(f: Facts) -> BookingStatus:
    """What the ``status`` query answers."""
    records = f.saga.records
    return BookingStatus(
        status=f.status,
        mode=f.request.mode,
        scenario=f.request.scenario,
        traveller=f.request.traveller.name,
        steps=[step_view(r) for r in records],
        compensation_plan=f.saga.plan(),
        failure=f.failure,
        confirmations={
            booked.kind.value: r.result.confirmation
            for r in records
            if (booked := booked_by(r.name)) is not None
            and isinstance(r.result, Reservation)
            and r.state is StepState.SUCCEEDED
        },
        outstanding=[r.name for r in f.saga.outstanding()],
        trip=f.request,
        # What is held changes as operators act, so it is read live.
        attention=f.attention.model_copy(update={"outstanding": f.held()}) if f.attention else None,
        audit=f.audit(),
        confirmation=f.confirmation,
        past_pivot=f.saga.past_pivot,
        ticket=f.ticket,
        undo_approvals=[undo_approval(f.saga, r) for r in records if r.approval is not None],
        waiting=list(f.waiting),
        waited=list(f.waited),
    )


def details(f: Facts) -> str:
    """The Markdown the Web UI shows as the run's current details."""
    lines = [f"**{f.status.value}** ({f.request.mode.value}, scenario `{f.request.scenario.value}`)", ""]
    lines += [_step_line(r) for r in f.saga.records]
    c = f.confirmation
    if c is not None and c.decision is None:
        lines += [
            "",
            f"Held until the traveller confirms, by {c.deadline.isoformat(timespec='seconds')}: "
            f"send the `{UPDATE_CONFIRM}` or `{UPDATE_DECLINE}` Update.",
        ]
    elif c is not None and c.decision is not None:
        lines += ["", f"Traveller's answer: {c.decision.value}{' (' + c.note + ')' if c.note else ''}"]
    for w in f.waiting:
        lines.append(w.text())
    if f.saga.past_pivot:
        lines.append(f"Ticket {f.ticket} issued: past the point of no return, recovering forward only.")
    if f.cancel_too_late and f.saga.past_pivot:
        lines.append("A cancel request came after the traveller confirmed: too late, the saga goes on forward.")
    if f.failure is not None:
        lines += ["", f"Failure: {f.failure.type}: {f.failure.message}"]
    if f.attention is not None and f.status is SagaStatus.NEEDS_ATTENTION:
        held = ", ".join(r.name for r in f.saga.outstanding()) or "none"
        lines += [
            "",
            f"Waiting for an operator until {f.attention.deadline.isoformat(timespec='seconds')}; "
            f"outstanding: {held}. Send the `{UPDATE_RETRY_COMPENSATION}` or `{UPDATE_RESOLVE}` Update.",
        ]
    for r in f.saga.awaiting_approval():
        assert r.approval is not None
        by = f" by {r.approval_deadline.isoformat(timespec='seconds')}" if r.approval_deadline else ""
        lines += [
            "",
            f"Undo of {r.name} held: {r.approval.reason}. Send the `{UPDATE_APPROVE_UNDO}` or `{UPDATE_KEEP}`"
            f" Update{by}; then the default applies: {f.saga.approval_default.value}.",
        ]
    for action in f.saga.actions:
        lines.append(
            f"- {action.at.isoformat(timespec='seconds')} {action.operator}: {action.action} "
            f"{', '.join(action.steps)} ({action.note})" + (f" [batch {action.batch}]" if action.batch else "")
        )
    return "\n".join(lines)


#: Who confirms each kind of booking, as a person reads it.
PROVIDER_NAMES = {"car": "car rental's", "hotel": "hotel's", "flight": "airline's"}


def waiting_line(w: WaitingView) -> str:
    """ "waiting for the airline's confirmation (ref ...) since ..., deadline ...": the page and the CLI say it too."""
    return (
        f"{w.step}: waiting for the {PROVIDER_NAMES[w.kind.value]} confirmation (ref {w.reference})"
        f" since {w.since.isoformat(timespec='seconds')}, deadline {w.deadline.isoformat(timespec='seconds')}"
    )


def _step_line(record: StepRecord) -> str:
    line = f"- {record.name}: {record.state.value}"
    if record.attempts > 1:
        line += f" after {record.attempts} attempts"
    confirmation = confirmation_of(record)
    if confirmation:
        line += f", confirmation {confirmation}"
    if record.error:
        line += f" ({record.error_type}: {record.error})"
    if record.undo_error:
        line += f"; undo failed: {record.undo_error}"
    return line
