"""What a booking's run says about itself in Temporal: its summary, details and memo.

User metadata and memos go through the data converter, so the codec encrypts
them; search attributes cannot, so they carry a tag instead of the name.
Pure functions: no I/O.
"""

from __future__ import annotations

from trip.models import BookingRequest

#: The memo field that carries the traveller's name.
MEMO_TRAVELLER = "traveller"


def static_summary(req: BookingRequest) -> str:
    return (
        f"Trip for {req.traveller.name}: {req.flight.origin} to {req.flight.destination} "
        f"on {req.flight.date}, {req.mode.value}, scenario {req.scenario.value}"
    )


def static_details(req: BookingRequest) -> str:
    return "\n".join(
        [
            f"**Traveller:** {req.traveller.name} <{req.traveller.email}>",
            f"**Car:** {req.car.city}, {req.car.pickup} to {req.car.dropoff}",
            f"**Hotel:** {req.hotel.city}, {req.hotel.check_in} to {req.hotel.check_out}",
            f"**Flight:** {req.flight.origin} to {req.flight.destination} on {req.flight.date}",
            f"**Mode:** {req.mode.value}  **Scenario:** {req.scenario.value}",
        ]
    )
