"""The booking's inputs and the messages between workflow and activities.

One model validates the web form, the CLI and the workflow input, so the rules
exist once. Models are built with keywords and every field added later must
have a default: running workflows then keep deserialising their old input.

Checks that depend on today's date run only when the caller passes
``context={"today": ...}`` (the form and the CLI do). Workflow code must never
pass it: a replay next month would otherwise reject the input it started with.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from saga import UndoDecision

MAX_DAYS_AHEAD = 365
MAX_TRIP_DAYS = 60
#: How long a booking whose undo is stuck waits for an operator, by default.
DEFAULT_ATTENTION_DEADLINE = timedelta(days=7)
#: The longest a traveller may take to confirm a held trip.
MAX_CONFIRM_WITHIN = timedelta(days=7)
#: A hold outlives the confirmation deadline by this much, so that a trip
#: confirmed at the last second can still be ticketed and finalized before the
#: providers let the holds lapse on their own.
HOLD_MARGIN = timedelta(minutes=30)
#: How long an undo that costs money waits for an operator's ``approve_undo`` or
#: ``keep`` before the booking's default decision applies.
DEFAULT_UNDO_APPROVAL_DEADLINE = timedelta(hours=12)
#: The longest a step may wait for a provider's confirmation callback (a week).
MAX_ASYNC_DEADLINE_S = 7 * 24 * 3600.0


class Kind(StrEnum):
    CAR = "car"
    HOTEL = "hotel"
    FLIGHT = "flight"


class Mode(StrEnum):
    PARALLEL = "parallel"
    SEQUENTIAL = "sequential"


class Scenario(StrEnum):
    """Demo fault injection. ``trip.scenarios`` says what each one does."""

    HAPPY = "happy"
    FLIGHT_FLAKY = "flight-flaky"
    FLIGHT_SOLD_OUT = "flight-sold-out"
    HOTEL_DOWN = "hotel-down"
    CAR_CANCEL_FLAKY = "car-cancel-flaky"
    CAR_CANCEL_BROKEN = "car-cancel-broken"
    CAR_CANCEL_OUTAGE = "car-cancel-outage"
    SLOW = "slow"
    # Only differ from ``happy`` when the trip is held for confirmation.
    TICKETING_DOWN = "ticketing-down"
    FINALIZE_HOTEL_FLAKY = "finalize-hotel-flaky"
    FINALIZE_HOTEL_BROKEN = "finalize-hotel-broken"
    HOTEL_CANCEL_FEE = "hotel-cancel-fee"
    # The provider answers 202 and confirms later by a signed callback.
    FLIGHT_ASYNC = "flight-async"
    HOTEL_ASYNC = "hotel-async"
    FLIGHT_ASYNC_LOST = "flight-async-lost"


class _Model(BaseModel):
    # Unknown keys are ignored: these models are also the messages between our
    # own processes, and during a rolling deploy an old worker must still read
    # a workflow input or activity result that a newer release added a field
    # to. User input is stricter: ``trip.forms.booking_from_user`` refuses unknown
    # keys, so a typo or a forged field is an error there, never dropped.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)


#: The workflow ids a booking may start under. Idempotency keys derive from
#: the id (``{id}:{kind}``) and travel to the providers and into web URLs, so
#: the set excludes ``/``, ``?``, ``#``, whitespace and anything outside ASCII.
#: ``%`` is allowed: every transport sends the key in a JSON body, not a path.
WORKFLOW_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:%-]{0,199}$"
WORKFLOW_ID_RE = re.compile(WORKFLOW_ID_PATTERN)
WORKFLOW_ID_RULE = "must be 1 to 200 characters: letters, digits and . _ : % -, starting with a letter or digit"


def check_workflow_id(workflow_id: str) -> str:
    """Return ``workflow_id`` if bookings may start under it; else raise ``ValueError``."""
    if not isinstance(workflow_id, str) or not WORKFLOW_ID_RE.fullmatch(workflow_id):
        raise ValueError(f"workflow id {workflow_id!r} {WORKFLOW_ID_RULE}")
    return workflow_id


def _no_control_chars(value: str) -> str:
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise ValueError("must not contain control characters")
    return value


_PLACE_RE = re.compile(r"^[^\W\d_]+(?:[ '.\-][^\W\d_]+)*\.?$")
_NAME_RE = re.compile(r"^[^\W\d_]+(?:[ '.,\-]{1,2}[^\W\d_]+)*\.?$")
_EMAIL_RE = re.compile(
    r"^[^@\s<>\"']+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


def _check_place(value: str) -> str:
    _no_control_chars(value)
    if not _PLACE_RE.match(value):
        raise ValueError("must be a place name: letters, spaces, hyphens and apostrophes only")
    return value


def _check_not_past(value: date, info: ValidationInfo) -> date:
    today = (info.context or {}).get("today")
    if today is None:
        return value
    if value < today:
        raise ValueError(f"must not be in the past (today is {today.isoformat()})")
    if value > today + timedelta(days=MAX_DAYS_AHEAD):
        raise ValueError(f"must be within {MAX_DAYS_AHEAD} days from today")
    return value


Place = Annotated[str, StringConstraints(min_length=2, max_length=64), AfterValidator(_check_place)]
TripDate = Annotated[date, AfterValidator(_check_not_past)]


class Traveller(_Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    email: Annotated[str, StringConstraints(min_length=3, max_length=254)]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        _no_control_chars(value)
        if not _NAME_RE.match(value):
            raise ValueError("must be a name: letters, spaces, hyphens, apostrophes and dots only")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        _no_control_chars(value)
        if not _EMAIL_RE.match(value):
            raise ValueError("must be an email address like ada@example.com")
        return value.lower()


class CarRequest(_Model):
    city: Place
    pickup: TripDate
    dropoff: TripDate

    @model_validator(mode="after")
    def _order(self) -> CarRequest:
        if self.dropoff < self.pickup:
            raise ValueError("must not be before the pick-up date")
        if (self.dropoff - self.pickup).days > MAX_TRIP_DAYS:
            raise ValueError(f"must be at most {MAX_TRIP_DAYS} days after the pick-up date")
        return self


class HotelRequest(_Model):
    city: Place
    check_in: TripDate
    check_out: TripDate

    @model_validator(mode="after")
    def _order(self) -> HotelRequest:
        if self.check_out <= self.check_in:
            raise ValueError("must be after the check-in date")
        if (self.check_out - self.check_in).days > MAX_TRIP_DAYS:
            raise ValueError(f"must be at most {MAX_TRIP_DAYS} nights after the check-in date")
        return self


class FlightRequest(_Model):
    origin: Place
    destination: Place
    date: TripDate

    @model_validator(mode="after")
    def _route(self) -> FlightRequest:
        if self.origin.casefold() == self.destination.casefold():
            raise ValueError("must be a different place from where the flight leaves")
        return self


class RetryOverrides(_Model):
    """Optional tuning of every step's retry policy (tests use short intervals).

    ``None`` keeps each step's own default from ``workflows.policies.STEP_POLICIES``.
    """

    initial_interval_s: Annotated[float, Field(gt=0, le=60)] | None = None
    backoff: Annotated[float, Field(ge=1, le=10)] | None = None
    max_interval_s: Annotated[float, Field(gt=0, le=600)] | None = None
    max_attempts: Annotated[int, Field(ge=1, le=50)] | None = None
    activity_timeout_s: Annotated[float, Field(gt=0, le=600)] | None = None
    undo_max_attempts: Annotated[int, Field(ge=1, le=100)] | None = None
    undo_max_interval_s: Annotated[float, Field(gt=0, le=600)] | None = None
    #: Task-queue priority of the undos: 1 is served first, 5 last, and work
    #: without one counts as 3. ``None`` keeps ``workflows.policies.UNDO_PRIORITY_KEY``.
    undo_priority_key: Annotated[int, Field(ge=1, le=5)] | None = None

    @model_validator(mode="after")
    def _intervals(self) -> RetryOverrides:
        first = self.initial_interval_s
        for name in ("max_interval_s", "undo_max_interval_s"):
            longest = getattr(self, name)
            if first is not None and longest is not None and longest < first:
                raise ValueError(f"{name} must not be shorter than initial_interval_s")
        return self


class BookingRequest(_Model):
    """Everything needed to book one trip: the workflow's only argument."""

    traveller: Traveller
    car: CarRequest
    hotel: HotelRequest
    flight: FlightRequest
    mode: Mode = Mode.PARALLEL
    scenario: Scenario = Scenario.HAPPY
    retry: RetryOverrides | None = None
    #: How long to wait for an operator when an undo is stuck (NEEDS_ATTENTION)
    #: before closing as RollbackIncomplete. ``None``: ``DEFAULT_ATTENTION_DEADLINE``.
    attention_deadline: Annotated[timedelta, Field(gt=timedelta(0), le=timedelta(days=365))] | None = None
    #: Hold and confirm: place holds, then wait this long for the traveller's
    #: ``confirm`` (or ``decline``) before ticketing. ``None``: book outright.
    confirm_within: Annotated[timedelta, Field(gt=timedelta(0), le=MAX_CONFIRM_WITHIN)] | None = None
    #: A cancellation fee above this (in the fee's own currency) holds the undo
    #: for an operator's approval (AWAITING_UNDO_APPROVAL); 0: any fee does.
    undo_fee_threshold: Annotated[Decimal, Field(ge=0, le=1_000_000)] = Decimal(0)
    #: How long a held undo waits for ``approve_undo`` / ``keep``. ``None``:
    #: ``DEFAULT_UNDO_APPROVAL_DEADLINE``.
    undo_approval_deadline: Annotated[timedelta, Field(gt=timedelta(0), le=timedelta(days=365))] | None = None
    #: What applies at that deadline: cancel and pay (``approve``), or ``keep``.
    undo_approval_default: UndoDecision = UndoDecision.APPROVE
    #: How long a step the provider confirms later (a 202 and a callback) may
    #: wait for its callback, in seconds. ``None``: the step's own default
    #: (``workflows.policies.StepPolicy.confirm_within``).
    async_deadline_s: Annotated[float, Field(gt=0, le=MAX_ASYNC_DEADLINE_S)] | None = None

    @field_validator("confirm_within", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        # The form and the CLI give a number of seconds as text; JSON carries
        # an ISO 8601 duration ("PT10M"), which pydantic parses itself.
        if isinstance(value, str):
            try:
                seconds = float(value.strip())
            except ValueError:
                return value
            try:
                return timedelta(seconds=seconds)
            except (ValueError, OverflowError):
                raise ValueError("must be a number of seconds, e.g. 600") from None
        return value


# --- messages between the workflow and the activities ---------------------


class ReserveRequest(_Model):
    """One provider call. The same ``idempotency_key`` books and undoes."""

    kind: Kind
    booking_id: str
    idempotency_key: str
    scenario: Scenario = Scenario.HAPPY
    traveller: Traveller
    details: CarRequest | HotelRequest | FlightRequest
    #: Place a hold that lapses at the provider after this many seconds unless
    #: it is finalized (car, hotel) or ticketed (flight). ``None``: book outright.
    hold_ttl_s: float | None = None


class Money(_Model):
    amount: Decimal
    currency: str


class CancellationFee(Money):
    """What cancelling a reservation costs, as the provider said when it booked."""

    #: The fee applies to a cancellation from this instant on (UTC); free before.
    applies_from: datetime


class Reservation(_Model):
    kind: Kind
    reservation_id: str
    confirmation: str
    attempt: int = 1
    #: Set for a hold: when the provider lets it lapse on its own (UTC).
    held_until: datetime | None = None
    #: Set when cancelling costs money (from some instant on).
    cancellation_fee: CancellationFee | None = None
    #: The provider accepted the request (202) and confirms it later by a
    #: signed callback; ``reference`` is its own name for the request, and
    #: ``confirmation`` holds that reference until the callback brings the real one.
    pending: bool = False
    reference: str | None = None


class CancelRequest(_Model):
    kind: Kind
    booking_id: str
    idempotency_key: str
    scenario: Scenario = Scenario.HAPPY


class CancelResult(_Model):
    kind: Kind
    idempotency_key: str
    #: ``cancelled``: a reservation was released; ``not_booked``: nothing was
    #: held, so the undo had nothing to do.
    outcome: str
    attempt: int = 1
    #: What the provider charged for the cancellation, if anything.
    fee_charged: Money | None = None


class FinalizeRequest(_Model):
    """Turn a held car or hotel into a confirmed booking (a retriable step)."""

    kind: Kind
    booking_id: str
    idempotency_key: str
    scenario: Scenario = Scenario.HAPPY


class FinalizeResult(_Model):
    kind: Kind
    idempotency_key: str
    confirmation: str
    attempt: int = 1


class TicketRequest(_Model):
    """Issue the ticket for a held flight: the saga's pivot, it cannot be undone."""

    booking_id: str
    #: The flight reservation's key; a retry with it never issues a second ticket.
    idempotency_key: str
    scenario: Scenario = Scenario.HAPPY


class Ticket(_Model):
    ticket_number: str
    confirmation: str
    attempt: int = 1
