"""The booking's status and result models: what the ``status`` query returns.

Kept out of ``workflows.booking`` so the sandbox can pass this module through:
pydantic models are then built once per worker, not once per workflow run.
The CLI and the web app import it to render a booking.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel

from trip.models import BookingRequest, Mode, Scenario
from workflows.saga import StepState


class SagaStatus(str, Enum):
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    ROLLED_BACK = "ROLLED_BACK"
    ROLLBACK_INCOMPLETE = "ROLLBACK_INCOMPLETE"
    CANCELLED = "CANCELLED"


TERMINAL = frozenset(
    {SagaStatus.COMPLETED, SagaStatus.ROLLED_BACK, SagaStatus.ROLLBACK_INCOMPLETE, SagaStatus.CANCELLED}
)


class StepView(BaseModel):
    name: str
    state: StepState
    attempts: int = 0
    confirmation: str | None = None
    error_type: str | None = None
    error: str | None = None
    undo_attempts: int = 0
    undo_outcome: str | None = None
    undo_error: str | None = None


class FailureView(BaseModel):
    step: str | None = None
    type: str
    message: str


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


class BookingResult(BaseModel):
    confirmations: dict[str, str]
    steps: list[StepView]
