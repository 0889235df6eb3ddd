"""What the benchmark's own workflows send to our booking activities, and how they call them.

The seed-style baseline (``bench.seed_style``) and the floor workflows
(``bench.floor``) both call our book and undo activities by name with these
inputs, so both build them here, and neither imports the other. Pure
functions of the request: safe inside a workflow.
"""

from __future__ import annotations

from temporalio.common import RetryPolicy

from trip.errors import STEP_NON_RETRYABLE_ERRORS
from trip.models import BookingRequest, CancelRequest, Kind, ReserveRequest

#: The SDK's default retry policy, except that a provider's refusal ends the
#: step: our activities leave that to the caller's policy (they raise typed
#: errors and never flag them non-retryable), so any workflow calling them
#: must list the types, or a sold-out flight would be retried for ever.
REFUSALS_END_A_STEP = RetryPolicy(non_retryable_error_types=list(STEP_NON_RETRYABLE_ERRORS))


def reserve_request(req: BookingRequest, booking_id: str, kind: Kind) -> ReserveRequest:
    """What ``book_<kind>`` takes for one part of the trip (the same key on every attempt)."""
    details = {Kind.CAR: req.car, Kind.HOTEL: req.hotel, Kind.FLIGHT: req.flight}[kind]
    return ReserveRequest(
        kind=kind,
        booking_id=booking_id,
        idempotency_key=f"{booking_id}:{kind.value}",
        scenario=req.scenario,
        traveller=req.traveller,
        details=details,
    )


def cancel_request(req: BookingRequest, booking_id: str, kind: Kind) -> CancelRequest:
    """What ``undo_book_<kind>`` takes: the key the booking was made under."""
    return CancelRequest(
        kind=kind, booking_id=booking_id, idempotency_key=f"{booking_id}:{kind.value}", scenario=req.scenario
    )
