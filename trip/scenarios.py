"""What each demo scenario does to the providers, and what it should end in.

The workflow and the activities never look at this table: they only carry the
scenario's name on every provider request. The provider service reads the
table and misbehaves accordingly, the way a real outage would look from the
outside. The form, the CLI and the tests read the descriptions and outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from trip.models import Kind, Scenario
from trip.status import SagaStatus

#: ``fail_first`` / ``cancel_fail_first`` value meaning "every attempt fails".
ALWAYS = -1


@dataclass(frozen=True)
class Fault:
    """How one provider misbehaves for one booking."""

    #: Answer 503 to the first N reserve attempts for a key (``ALWAYS``: all).
    fail_first: int = 0
    #: Answer 409 SoldOut, as if the inventory were exhausted.
    sold_out: bool = False
    #: Added to every call for the booking (reserve, confirm, ticket, cancel).
    latency_ms: int = 0
    #: Answer 503 to the first N cancel attempts for a key (``ALWAYS``: all).
    cancel_fail_first: int = 0
    #: Answer 503 to every cancel until an operator lifts the outage for the
    #: booking (``POST /admin/outages/lift``).
    cancel_outage: bool = False
    #: Ticketing (the pivot) is refused: 409 ``TicketingRefused``.
    ticket_refused: bool = False
    #: Answer 503 to the first N finalize attempts for a key (``ALWAYS``: all).
    finalize_fail_first: int = 0
    #: Cancelling costs this much (``cancel_fee_currency``) from the moment it
    #: is booked: the reservation says so, and the cancellation charges it.
    cancel_fee: Decimal | None = None
    cancel_fee_currency: str = "EUR"
    #: Answer a booking 202 ``pending`` and confirm it later by a signed callback.
    confirms_later: bool = False
    #: With ``confirms_later``: the callback is never sent.
    callback_lost: bool = False


@dataclass(frozen=True)
class ScenarioSpec:
    scenario: Scenario
    description: str
    #: What the booking ends in (booked outright, unless ``needs_confirmation``).
    expected: SagaStatus
    faults: dict[Kind, Fault] = field(default_factory=dict)
    #: The fault only shows in hold-and-confirm mode (``confirm_within``), and
    #: ``expected`` is the outcome once the traveller confirms. Booked
    #: outright, the scenario completes like ``happy``.
    needs_confirmation: bool = False
    #: A provider confirms by callback: the booking needs a receiver the
    #: provider can reach (the web app's ``/callbacks/<kind>``).
    needs_callback: bool = False

    def fault(self, kind: Kind) -> Fault:
        return self.faults.get(kind, Fault())


SCENARIOS: dict[Scenario, ScenarioSpec] = {
    spec.scenario: spec
    for spec in (
        ScenarioSpec(Scenario.HAPPY, "happy path: every provider confirms at once", SagaStatus.COMPLETED),
        ScenarioSpec(
            Scenario.FLIGHT_FLAKY,
            "recover forward: the airline fails 3 times, then the 4th attempt books the flight",
            SagaStatus.COMPLETED,
            {Kind.FLIGHT: Fault(fail_first=3)},
        ),
        ScenarioSpec(
            Scenario.FLIGHT_SOLD_OUT,
            "recover backward: the flight is sold out, so the car and hotel are undone",
            SagaStatus.ROLLED_BACK,
            {Kind.FLIGHT: Fault(sold_out=True)},
        ),
        ScenarioSpec(
            Scenario.HOTEL_DOWN,
            "hotel outage: the hotel keeps failing past its retry budget, then everything booked is undone",
            SagaStatus.ROLLED_BACK,
            {Kind.HOTEL: Fault(fail_first=ALWAYS)},
        ),
        ScenarioSpec(
            Scenario.CAR_CANCEL_FLAKY,
            "flaky undo: the flight is sold out and cancelling the car fails twice before it succeeds",
            SagaStatus.ROLLED_BACK,
            {Kind.FLIGHT: Fault(sold_out=True), Kind.CAR: Fault(cancel_fail_first=2)},
        ),
        ScenarioSpec(
            Scenario.CAR_CANCEL_BROKEN,
            "broken undo: the flight is sold out and the car can never be cancelled; an operator must resolve it",
            SagaStatus.NEEDS_ATTENTION,
            {Kind.FLIGHT: Fault(sold_out=True), Kind.CAR: Fault(cancel_fail_first=ALWAYS)},
        ),
        ScenarioSpec(
            Scenario.CAR_CANCEL_OUTAGE,
            "undo outage: the flight is sold out and the car provider cannot cancel until its outage is lifted;"
            " then an operator retries the undo",
            SagaStatus.NEEDS_ATTENTION,
            {Kind.FLIGHT: Fault(sold_out=True), Kind.CAR: Fault(cancel_outage=True)},
        ),
        ScenarioSpec(
            Scenario.SLOW,
            "slow providers: every call takes 1.5 seconds, so you can watch (or kill the worker)",
            SagaStatus.COMPLETED,
            {kind: Fault(latency_ms=1500) for kind in Kind},
        ),
        ScenarioSpec(
            Scenario.TICKETING_DOWN,
            "hold and confirm: the airline refuses to issue the ticket after you confirm, so every hold is released",
            SagaStatus.ROLLED_BACK,
            {Kind.FLIGHT: Fault(ticket_refused=True)},
            needs_confirmation=True,
        ),
        ScenarioSpec(
            Scenario.FINALIZE_HOTEL_FLAKY,
            "hold and confirm: after ticketing, confirming the hotel fails twice, then succeeds (recovered forward)",
            SagaStatus.COMPLETED,
            {Kind.HOTEL: Fault(finalize_fail_first=2)},
            needs_confirmation=True,
        ),
        ScenarioSpec(
            Scenario.FINALIZE_HOTEL_BROKEN,
            "hold and confirm: after ticketing, the hotel can never be confirmed; past the point of no return,"
            " an operator must settle it (never an unwind)",
            SagaStatus.NEEDS_ATTENTION,
            {Kind.HOTEL: Fault(finalize_fail_first=ALWAYS)},
            needs_confirmation=True,
        ),
        ScenarioSpec(
            Scenario.HOTEL_CANCEL_FEE,
            "costly undo: the flight is sold out and cancelling the hotel costs a night (150 EUR);"
            " the undo waits for an operator's approve_undo or keep",
            SagaStatus.AWAITING_UNDO_APPROVAL,
            {Kind.FLIGHT: Fault(sold_out=True), Kind.HOTEL: Fault(cancel_fee=Decimal("150.00"))},
        ),
        ScenarioSpec(
            Scenario.FLIGHT_ASYNC,
            "confirmed later: the airline answers 202 and confirms by a signed callback a little later",
            SagaStatus.COMPLETED,
            {Kind.FLIGHT: Fault(confirms_later=True)},
            needs_callback=True,
        ),
        ScenarioSpec(
            Scenario.HOTEL_ASYNC,
            "confirmed later: the hotel answers 202 and confirms by a signed callback a little later",
            SagaStatus.COMPLETED,
            {Kind.HOTEL: Fault(confirms_later=True)},
            needs_callback=True,
        ),
        ScenarioSpec(
            Scenario.FLIGHT_ASYNC_LOST,
            "lost callback: the airline answers 202 but never calls back; past the deadline everything is undone",
            SagaStatus.ROLLED_BACK,
            {Kind.FLIGHT: Fault(confirms_later=True, callback_lost=True)},
            needs_callback=True,
        ),
    )
}

#: Scenarios that show their fault when the trip is booked outright, and those
#: that only show it in hold-and-confirm mode.
OUTRIGHT: tuple[Scenario, ...] = tuple(
    s for s, spec in SCENARIOS.items() if not spec.needs_confirmation and not spec.needs_callback
)
HELD: tuple[Scenario, ...] = tuple(s for s, spec in SCENARIOS.items() if spec.needs_confirmation)
#: Scenarios where a provider confirms by callback (``docs/async-confirmation.md``).
CONFIRMED_LATER: tuple[Scenario, ...] = tuple(s for s, spec in SCENARIOS.items() if spec.needs_callback)
