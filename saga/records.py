"""The saga's records: what a step is, what happened to it, and how a saga ends.

Plain data, no Temporal calls: the saga core (``saga.core``) fills these in,
and a workflow reads them for its status queries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

COMPENSATION_FAILED_TYPE = "CompensationFailed"
#: ``StepRecord.error_type`` of a step cancelled while it ran.
CANCELLED = "Cancelled"

#: Undos must eventually succeed, so they retry longer than forward steps; but
#: the budget is bounded, so a stuck undo surfaces instead of hiding forever.
DEFAULT_UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)
DEFAULT_UNDO_TIMEOUT = timedelta(seconds=30)


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    #: The step's call returned, and it waits for the other side's confirmation.
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation-failed"
    #: An operator said the step's effect was undone outside the saga.
    RESOLVED = "resolved"
    SKIPPED = "skipped"
    #: The unwind reached an undo that needs a person's approval (``Saga(undo_gate=...)``):
    #: it waits for ``approve_undo`` or ``keep``, or for the approval deadline.
    AWAITING_APPROVAL = "awaiting-approval"
    #: Its undo was not run, by decision: the effect stays in place on purpose.
    KEPT = "kept"


class UndoDecision(StrEnum):
    """What was decided about an undo that needed approval."""

    #: Run the undo and accept its cost.
    APPROVE = "approve"
    #: Do not run it: the step's effect stays, recorded as kept.
    KEEP = "keep"


class StepKind(StrEnum):
    """Where a step stands relative to the point of no return.

    Before the pivot every step is *compensatable*: it has an undo, and a
    failure unwinds. The *pivot* is the step that cannot be undone; once it has
    succeeded the stack is sealed. Steps after it are *retriable*: they have no
    undo, and a failure past its retry budget waits for an operator instead of
    unwinding.
    """

    COMPENSATABLE = "compensatable"
    PIVOT = "pivot"
    RETRIABLE = "retriable"


@dataclass(frozen=True)
class Compensation:
    """An undo: an activity (name or function) and its argument."""

    activity: str | Callable[..., Any]
    arg: Any
    summary: str | None = None
    #: ``None``: the saga's ``undo_retry_policy`` (for an undo).
    retry_policy: RetryPolicy | None = None
    start_to_close_timeout: timedelta | None = None
    result_type: type | None = None


@dataclass(frozen=True)
class ApprovalNeeded:
    """An undo gate's answer: this undo costs ``cost`` ``currency`` and needs a person's approval.

    The saga does not interpret the cost: it shows it, and audits it with the decision.
    """

    cost: Decimal
    currency: str
    reason: str


#: Called when the unwind reaches a step's undo: ``ApprovalNeeded`` holds the
#: undo for a decision, ``None`` runs it at once. Workflow code: deterministic.
UndoGate = Callable[["StepRecord"], "ApprovalNeeded | None"]


#: A forward call: the same shape as an undo. ``Saga.run`` builds one for every
#: step, and keeps a retriable step's so that an operator can run it again.
Call = Compensation


@dataclass
class StepRecord:
    name: str
    state: StepState = StepState.PENDING
    kind: StepKind = StepKind.COMPENSATABLE
    #: Attempts of the forward activity; 0 while unknown (e.g. still running).
    attempts: int = 0
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    undo_attempts: int = 0
    undo_result: Any = None
    undo_error: str | None = None
    undo_error_type: str | None = None
    undo: Compensation | None = field(default=None, repr=False)
    #: True while the undo is on the stack and has not run yet.
    undo_pending: bool = False
    #: A retriable step's own call, for an operator's retry.
    forward: Call | None = field(default=None, repr=False)
    #: Set when the undo gate held this step's undo for approval.
    approval: ApprovalNeeded | None = None
    #: Workflow time the undo was held, and when the default decision applies (``None``: never).
    approval_since: datetime | None = None
    approval_deadline: datetime | None = None
    #: The decision on a held undo, once taken (by a person or by the deadline).
    decision: UndoDecision | None = None


@dataclass
class SagaAction:
    """One operator action on a stuck unwind: the audit trail's row."""

    #: Workflow time at which the action was accepted.
    at: datetime
    operator: str
    #: ``retry_compensation``, ``resolve``, ``approve_undo`` or ``keep``.
    action: str
    steps: list[str]
    note: str
    #: Each step's state once the action finished (empty while a retry runs).
    outcomes: dict[str, str] = field(default_factory=dict)
    #: The bulk operation this action was part of, if any: one id for every
    #: booking an operator acted on at once.
    batch: str | None = None
    #: ``approve_undo`` / ``keep``: the cost the gate named (accepted, or avoided by keeping).
    cost: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True)
class UndoFailure:
    step: str
    error_type: str | None
    message: str


class SagaSealedError(RuntimeError):
    """A programming error: unwinding, or adding an undo, past the pivot.

    A ``RuntimeError`` fails the workflow *task*, not the workflow: Temporal
    retries the task, so the run stays open for a fix instead of ending wrong.
    """


class SagaCompensationError(ApplicationError):
    """One or more undos did not succeed within their budget."""

    def __init__(self, failures: Sequence[UndoFailure], *, cancelled: bool = False) -> None:
        self.failures = list(failures)
        #: The workflow was also cancelled while it unwound.
        self.cancelled = cancelled
        summary = "; ".join(f"{f.step}: {f.message}" for f in self.failures)
        super().__init__(
            f"{len(self.failures)} compensation(s) failed: {summary}",
            *[{"step": f.step, "type": f.error_type, "message": f.message} for f in self.failures],
            type=COMPENSATION_FAILED_TYPE,
            non_retryable=True,
        )


#: Reads the attempt count an activity reported, from its failure or its
#: result; ``None`` when it did not say. How activities report it is their own
#: convention, so the workflow passes readers in (``Saga(attempts_from_...)``).
FailureAttempts = Callable[[ActivityError], "int | None"]
ResultAttempts = Callable[[Any], "int | None"]
