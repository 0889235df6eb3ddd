"""Which undos wait for an operator's approval: those whose cancellation fee is above the booking's threshold.

The saga core holds an undo when its gate says so (``Saga(undo_gate=...)``);
this is the booking's gate. It reads the fee the provider named when it booked
(``Reservation.cancellation_fee``) and the workflow's clock. Workflow code:
deterministic, no I/O.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from saga import ApprovalNeeded, Saga, StepRecord, UndoGate
    from trip.models import DEFAULT_UNDO_APPROVAL_DEADLINE, BookingRequest, Reservation

#: Marks runs that hold a costly undo for approval. Runs recorded before it
#: never held one: their undos ran at once, whatever they cost.
PATCH_UNDO_APPROVAL = "undo-approval"


def needs_approval(req: BookingRequest, record: StepRecord) -> ApprovalNeeded | None:
    """The fee a step's undo would be charged now, if it is above the threshold; else ``None``."""
    reservation = record.result
    if not isinstance(reservation, Reservation) or reservation.cancellation_fee is None:
        return None
    fee = reservation.cancellation_fee
    if fee.amount <= req.undo_fee_threshold or workflow.now() < fee.applies_from:
        return None
    return ApprovalNeeded(
        cost=fee.amount,
        currency=fee.currency,
        reason=f"cancelling {reservation.confirmation} costs {fee.amount} {fee.currency}",
    )


def gate(req: BookingRequest) -> UndoGate:
    def held(record: StepRecord) -> ApprovalNeeded | None:
        needed = needs_approval(req, record)
        # The patch is asked only when an undo would be held, so runs that
        # never hold one record nothing new.
        return needed if needed is not None and workflow.patched(PATCH_UNDO_APPROVAL) else None

    return held


def configure(saga: Saga, req: BookingRequest) -> None:
    """Give the booking's saga its undo gate, the approval deadline and the default decision."""
    saga.undo_gate = gate(req)
    saga.approval_timeout = req.undo_approval_deadline or DEFAULT_UNDO_APPROVAL_DEADLINE
    saga.approval_default = req.undo_approval_default
