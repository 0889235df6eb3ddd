"""The argument of every activity a booking runs: pure functions of the request.

Every call of one step carries the same idempotency key, so a retried booking
never books twice and its undo (or the ticket, or the finalize) finds exactly
that reservation. No I/O: the workflow imports this inside its sandbox.
"""

from __future__ import annotations

from trip.models import (
    HOLD_MARGIN,
    BookingRequest,
    CancelRequest,
    CarRequest,
    FinalizeRequest,
    FlightRequest,
    HotelRequest,
    Kind,
    ReserveRequest,
    TicketRequest,
)
from trip.steps import TICKET_KIND


def key(booking_id: str, kind: Kind) -> str:
    return f"{booking_id}:{kind.value}"


def details(req: BookingRequest, kind: Kind) -> CarRequest | HotelRequest | FlightRequest:
    if kind is Kind.CAR:
        return req.car
    return req.hotel if kind is Kind.HOTEL else req.flight


def reserve(req: BookingRequest, kind: Kind, booking_id: str) -> ReserveRequest:
    return ReserveRequest(
        kind=kind,
        booking_id=booking_id,
        idempotency_key=key(booking_id, kind),
        scenario=req.scenario,
        traveller=req.traveller,
        details=details(req, kind),
        # A hold outlives the confirmation window (see HOLD_MARGIN).
        hold_ttl_s=(req.confirm_within + HOLD_MARGIN).total_seconds() if req.confirm_within is not None else None,
    )


def cancel(req: BookingRequest, kind: Kind, booking_id: str) -> CancelRequest:
    return CancelRequest(kind=kind, booking_id=booking_id, idempotency_key=key(booking_id, kind), scenario=req.scenario)


def ticket(req: BookingRequest, booking_id: str) -> TicketRequest:
    return TicketRequest(booking_id=booking_id, idempotency_key=key(booking_id, TICKET_KIND), scenario=req.scenario)


def finalize(req: BookingRequest, kind: Kind, booking_id: str) -> FinalizeRequest:
    return FinalizeRequest(
        kind=kind, booking_id=booking_id, idempotency_key=key(booking_id, kind), scenario=req.scenario
    )
