"""What the benchmark's own workflows send to our booking activities.

The seed-style baseline (``bench.seed_style``) and the floor workflows
(``bench.floor``) both call ``book_<kind>`` and ``undo_book_<kind>`` by name
with these inputs, so both build them here, and neither imports the other.
Pure functions of the request: safe inside a workflow.
"""

from __future__ import annotations

from trip.models import BookingRequest, CancelRequest, Kind, ReserveRequest


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
