"""The booking's status and result models: what the ``status`` query returns.

Kept out of ``workflows.booking`` so the sandbox can pass this module through:
pydantic models are then built once per worker, not once per workflow run.
The CLI and the web app import it to render a booking.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from saga import StepKind, StepState, UndoDecision
from trip.models import BookingRequest, Kind, Mode, Money, Scenario


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    ROLLED_BACK = "ROLLED_BACK"
    ROLLBACK_INCOMPLETE = "ROLLBACK_INCOMPLETE"
    CANCELLED = "CANCELLED"
    #: Undos ran out of budget; the workflow is open and waits for an operator
    #: (``retry_compensation`` / ``resolve``) or for its attention deadline.
    NEEDS_ATTENTION = "NEEDS_ATTENTION"
    #: Hold and confirm: everything is held, the traveller has until
    #: ``confirmation.deadline`` to send ``confirm`` or ``decline``.
    AWAITING_CONFIRMATION = "AWAITING_CONFIRMATION"
    #: Past the pivot, a step was still not done at the attention deadline: the
    #: run failed ``TripIncomplete``; the ticket stands, a person finishes the rest.
    TRIP_INCOMPLETE = "TRIP_INCOMPLETE"
    #: The unwind reached an undo that costs money: it waits for an operator's
    #: ``approve_undo`` or ``keep`` (``undo_approvals``), or for the default at the deadline.
    AWAITING_UNDO_APPROVAL = "AWAITING_UNDO_APPROVAL"


TERMINAL = frozenset(
    {
        SagaStatus.COMPLETED,
        SagaStatus.ROLLED_BACK,
        SagaStatus.ROLLBACK_INCOMPLETE,
        SagaStatus.CANCELLED,
        SagaStatus.TRIP_INCOMPLETE,
    }
)


class StepView(BaseModel):
    name: str
    state: StepState
    kind: StepKind = StepKind.COMPENSATABLE
    attempts: int = 0
    confirmation: str | None = None
    error_type: str | None = None
    error: str | None = None
    undo_attempts: int = 0
    undo_outcome: str | None = None
    undo_error: str | None = None
    #: What the provider charged to undo it.
    undo_fee: Money | None = None
    #: The step's running activity (or undo) is paused on the server
    #: (``temporal activity pause``). Filled in by the client, never by the workflow.
    paused: bool = False


class FailureView(BaseModel):
    step: str | None = None
    type: str
    message: str


class OutstandingStep(BaseModel):
    """A step an operator must settle.

    Before the pivot: a reservation that may still be held because its undo
    failed (``undo_*``). After it (``kind`` retriable): a step that is still not
    done, e.g. a hold not yet turned into a booking (``error*``).
    """

    step: str
    confirmation: str | None = None
    undo_error_type: str | None = None
    undo_error: str | None = None
    undo_attempts: int = 0
    kind: StepKind = StepKind.COMPENSATABLE
    error_type: str | None = None
    error: str | None = None
    attempts: int = 0


class OperatorAction(BaseModel):
    """One row of the audit trail: who did what, when (workflow time), and why."""

    at: datetime
    operator: str
    action: str
    steps: list[str]
    note: str
    #: Each step's state once the action finished (empty while a retry runs).
    outcomes: dict[str, str] = {}
    #: The bulk operation (``run_operator.py retry --all``, "Retry all" on
    #: ``/attention``) this action was part of; None for a single booking.
    batch: str | None = None
    #: ``approve_undo`` / ``keep``: the fee accepted, or avoided by keeping.
    cost: Decimal | None = None
    currency: str | None = None


class Attention(BaseModel):
    """Why a booking in ``NEEDS_ATTENTION`` waits, and until when."""

    since: datetime
    deadline: datetime
    outstanding: list[OutstandingStep]


class UndoApproval(BaseModel):
    """An undo the saga held because it costs money, and what was decided."""

    step: str
    confirmation: str | None = None
    fee: Money
    reason: str
    since: datetime
    #: When ``default`` applies; ``None``: no deadline.
    deadline: datetime | None = None
    default: UndoDecision
    #: ``None`` while waiting.
    decision: UndoDecision | None = None


class Decision(StrEnum):
    """How a held trip's confirmation window ended."""

    CONFIRMED = "confirmed"
    DECLINED = "declined"
    #: Nobody answered before the deadline.
    EXPIRED = "expired"

    def __str__(self) -> str:
        # Pages and CLIs print the word, as they did when it was a plain string.
        return self.value


class ConfirmationView(BaseModel):
    """A held trip's confirmation window, and how it ended."""

    since: datetime
    deadline: datetime
    #: ``None`` while waiting.
    decision: Decision | None = None
    note: str = ""


class WaitingView(BaseModel):
    """A step whose provider answered 202: it waits for the provider's signed callback."""

    step: str
    kind: Kind
    #: The provider's own reference for the pending request.
    reference: str
    since: datetime
    deadline: datetime
    #: How the wait ended: ``confirmed`` (the callback came) or ``timed-out``; ``None`` while waiting.
    outcome: str | None = None
    ended: datetime | None = None

    def text(self) -> str:
        """ "waiting for the airline's confirmation (ref ...) since ..., deadline ...": page, CLI and Web UI say it."""
        who = PROVIDER_NAMES[self.kind.value]
        if self.outcome is None:
            since, deadline = (t.isoformat(timespec="seconds") for t in (self.since, self.deadline))
            return (
                f"{self.step}: waiting for the {who} confirmation (ref {self.reference})"
                f" since {since}, deadline {deadline}"
            )
        when = self.ended.isoformat(timespec="seconds") if self.ended else "?"
        return f"{self.step}: the {who} confirmation (ref {self.reference}) {self.outcome} at {when}"


#: Who confirms each kind of booking, as a person reads it.
PROVIDER_NAMES = {"car": "car rental's", "hotel": "hotel's", "flight": "airline's"}


class BookingStatus(BaseModel):
    """What the ``status`` query returns; the CLI and the web page render it."""

    status: SagaStatus
    mode: Mode
    scenario: Scenario
    traveller: str
    steps: list[StepView]
    #: Undos that would run if the saga unwound now, in the order they would run.
    compensation_plan: list[str]
    failure: FailureView | None = None
    confirmations: dict[str, str] = {}
    #: Steps whose reservation is still held after a failed unwind.
    outstanding: list[str] = []
    #: The booking as requested, so a status page can show the trip.
    trip: BookingRequest | None = None
    #: Set while (and after) the saga waited for an operator.
    attention: Attention | None = None
    #: Every operator action, oldest first.
    audit: list[OperatorAction] = []
    #: Hold and confirm only: the confirmation window.
    confirmation: ConfirmationView | None = None
    #: The pivot (ticketing) succeeded: from here the saga only recovers forward.
    past_pivot: bool = False
    ticket: str | None = None
    #: Undos held for a decision because they cost money, waiting or decided.
    undo_approvals: list[UndoApproval] = []
    #: Steps waiting for a provider's confirmation callback, now.
    waiting: list[WaitingView] = []
    #: Steps that waited for one, and how each wait ended.
    waited: list[WaitingView] = []


class BookingResult(BaseModel):
    confirmations: dict[str, str]
    steps: list[StepView]
    #: Hold and confirm only: the flight's ticket number.
    ticket: str | None = None


# --- operator Updates: the Temporal CLI calls these, so names and shapes are a contract


class _OperatorInput(BaseModel):
    # A typo in a hand-written ``--input`` must be an error, not a dropped field;
    # unknown and empty fields are kept here so that the Update's validator can
    # name them (a decoding error would only say "Failed decoding arguments").
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    operator: str = ""
    note: str = ""
    #: Set by a bulk operation: its id, kept in the audit trail. Optional with a
    #: default, so inputs written before it existed decode as they did.
    batch: str | None = None


class RetryCompensationInput(_OperatorInput):
    """``retry_compensation``: ``steps`` null means every outstanding step."""

    steps: list[str] | None = None


class ResolveInput(_OperatorInput):
    """``resolve``: the step's reservation was released outside the system."""

    step: str = ""


class UndoDecisionInput(_OperatorInput):
    """``approve_undo`` / ``keep``: the step whose costly undo waits for a decision."""

    step: str = ""


class OperatorActionResult(BaseModel):
    """What an operator Update returns once it has finished."""

    status: SagaStatus
    #: The acted-on steps' new states.
    outcomes: dict[str, str]
    #: Steps still outstanding afterwards.
    outstanding: list[str]


# --- traveller Updates on a held trip (AWAITING_CONFIRMATION): also a contract


class ConfirmInput(BaseModel):
    """``confirm`` / ``decline``: an optional note for the record."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    note: str = ""


class ConfirmResult(BaseModel):
    """What ``confirm`` / ``decline`` return: accepted; the saga goes on from here."""

    status: SagaStatus
    decision: Decision
