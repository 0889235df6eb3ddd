"""The routes the saga calls: book (or hold), confirm, ticket and cancel one part of a trip.

Each first refuses a key that is not the request's booking's (before any
injected fault, outage or attempt count), then injects its scenario's fault,
then asks the ledger. A refusal is not an attempt: it is answered without
counting, so a forged or mistaken call cannot use up a real booking's faults.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from providers.callbacks import SENDER, pending_answer
from providers.handling import (
    LEDGER,
    Reject,
    error_response,
    failing,
    fault_of,
    hold_ttl,
    injected_delay,
    json_body,
    key_and_booking,
    kind_of,
    refused,
    resource_of,
)
from providers.ledger import LedgerConflict
from trip.errors import ERROR_STATUS, ErrorType
from trip.models import CarRequest, FlightRequest, HotelRequest, Kind, Traveller

_DETAILS: dict[Kind, type[CarRequest] | type[HotelRequest] | type[FlightRequest]] = {
    Kind.CAR: CarRequest,
    Kind.HOTEL: HotelRequest,
    Kind.FLIGHT: FlightRequest,
}


async def reserve(request: web.Request) -> web.Response:
    kind = kind_of(request)
    fault = fault_of(request, kind)
    body = await json_body(request)
    key, booking_id = key_and_booking(body.get("idempotency_key"), body.get("booking_id"))
    hold_ttl_s = hold_ttl(body)
    try:
        traveller = Traveller.model_validate(body.get("traveller"))
        details = _DETAILS[kind].model_validate(body.get("details"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return error_response(422, "InvalidBooking", f"{where}: {first['msg']}")

    ledger = request.app[LEDGER]
    await injected_delay(request, fault)
    # No await from here on: checking the key's owner, peeking at the attempt
    # number and counting it cannot interleave with another request for the key.
    try:
        ledger.refuse_foreign_key(kind=kind.value, key=key, booking_id=booking_id, op="reserve")
    except LedgerConflict as exc:
        return refused(exc)
    attempt = ledger.next_attempt(key, "reserve")
    if failing(fault.fail_first, attempt):
        ledger.count_attempt(key, "reserve")
        return error_response(
            503, "Unavailable", f"{kind.value} provider is temporarily unavailable (attempt {attempt})"
        )
    try:
        outcome = ledger.reserve(
            kind=kind.value,
            key=key,
            booking_id=booking_id,
            resource=resource_of(details),
            traveller=traveller.model_dump(mode="json"),
            details=details.model_dump(mode="json"),
            force_sold_out=fault.sold_out,
            hold_ttl_s=hold_ttl_s,
            # A provider that confirms later does so for bookings; a hold is answered at once.
            pending=fault.confirms_later and hold_ttl_s is None,
        )
    except LedgerConflict as exc:
        # A refusal is not an attempt: the ledger stays exactly as it was.
        return refused(exc)
    ledger.count_attempt(key, "reserve")
    if outcome.row["status"] == "pending":
        # A retry gets the same pending answer; only the first schedules the callback.
        if outcome.created and not fault.callback_lost:
            request.app[SENDER].schedule(outcome.row)
        return web.json_response(pending_answer(outcome.row), status=202)
    answer = dict(outcome.row)
    if fault.cancel_fee is not None:
        # The fee applies from the moment of booking, as for a stay within 24 hours of check-in.
        answer["cancellation_fee"] = {
            "amount": str(fault.cancel_fee),
            "currency": fault.cancel_fee_currency,
            "applies_from": outcome.row["created_at"],
        }
    return web.json_response(answer, status=201 if outcome.created else 200)


async def confirm(request: web.Request) -> web.Response:
    """Finalize a held car or hotel; a retry answers ``already_confirmed`` with the same confirmation."""
    kind = kind_of(request)
    if kind is Kind.FLIGHT:
        raise Reject(404, "NotFound", "a flight is not confirmed but ticketed: POST /flight/tickets")
    fault = fault_of(request, kind)
    body = await json_body(request)
    key, booking_id = key_and_booking(body.get("idempotency_key"), body.get("booking_id"))
    ledger = request.app[LEDGER]
    await injected_delay(request, fault)
    try:  # as in reserve: another booking's key is refused before any fault, and is not an attempt
        ledger.refuse_foreign_key(kind=kind.value, key=key, booking_id=booking_id, op="finalize")
    except LedgerConflict as exc:
        return refused(exc)
    attempt = ledger.next_attempt(key, "finalize")
    if failing(fault.finalize_fail_first, attempt):
        ledger.count_attempt(key, "finalize")
        return error_response(503, "Unavailable", f"{kind.value} provider cannot confirm right now (attempt {attempt})")
    try:
        row, outcome = ledger.confirm(kind=kind.value, key=key, booking_id=booking_id)
    except LedgerConflict as exc:
        return refused(exc)
    ledger.count_attempt(key, "finalize")
    return web.json_response(
        {"kind": kind.value, "idempotency_key": key, "confirmation": row["confirmation"], "outcome": outcome}
    )


async def ticket(request: web.Request) -> web.Response:
    """Issue the ticket for a held flight: the point of no return, so never twice."""
    fault = fault_of(request, Kind.FLIGHT)
    body = await json_body(request)
    key, booking_id = key_and_booking(body.get("idempotency_key"), body.get("booking_id"))
    await injected_delay(request, fault)
    try:  # as in reserve: another booking's key never reaches the airline's answer
        request.app[LEDGER].refuse_foreign_key(kind=Kind.FLIGHT.value, key=key, booking_id=booking_id, op="finalize")
    except LedgerConflict as exc:
        return refused(exc)
    if fault.ticket_refused:
        error = ErrorType.TICKETING_REFUSED.value
        return error_response(ERROR_STATUS[error], error, "the airline refused to issue the ticket for this booking")
    try:
        row, outcome = request.app[LEDGER].ticket(key=key, booking_id=booking_id)
    except LedgerConflict as exc:
        return refused(exc)
    return web.json_response(
        {
            "idempotency_key": key,
            "ticket_number": row["ticket_number"],
            "confirmation": row["confirmation"],
            "outcome": outcome,
        }
    )


async def cancel(request: web.Request) -> web.Response:
    """Undo, with the key in the body: no URL encoding can change it."""
    body = await json_body(request)
    return await _cancel(request, body.get("idempotency_key"), body)


async def cancel_by_path(request: web.Request) -> web.Response:
    """The previous release's undo route, kept so its workers still work mid-deploy.

    aiohttp hands over the *decoded* path segment, so a key with ``%XX`` in it
    arrives changed; ``Ledger.cancel`` then refuses it as another booking's key
    rather than voiding it.
    """
    body = await json_body(request)
    return await _cancel(request, request.match_info["key"], body)


async def _cancel(request: web.Request, key: Any, body: dict[str, Any]) -> web.Response:
    kind = kind_of(request)
    fault = fault_of(request, kind)
    key, booking_id = key_and_booking(key, body.get("booking_id"))
    ledger = request.app[LEDGER]
    await injected_delay(request, fault)
    try:  # as in reserve: no await until it is counted, and another booking's key is refused first
        ledger.refuse_foreign_key(kind=kind.value, key=key, booking_id=booking_id, op="cancel")
    except LedgerConflict as exc:
        return refused(exc)
    attempt = ledger.next_attempt(key, "cancel")
    if failing(fault.cancel_fail_first, attempt):
        ledger.count_attempt(key, "cancel")
        return error_response(503, "Unavailable", f"{kind.value} provider cannot cancel right now (attempt {attempt})")
    if fault.cancel_outage and not ledger.outage_lifted(booking_id=booking_id, kind=kind.value):
        ledger.count_attempt(key, "cancel")
        return error_response(
            503, "Unavailable", f"{kind.value} provider outage: cancellations are down until it is lifted"
        )
    try:
        outcome = ledger.cancel(kind=kind.value, key=key, booking_id=booking_id)
    except LedgerConflict as exc:
        return refused(exc)
    ledger.count_attempt(key, "cancel")
    answer: dict[str, Any] = {"kind": kind.value, "idempotency_key": key, "outcome": outcome}
    if fault.cancel_fee is not None and outcome in ("cancelled", "already_cancelled"):
        # A retry whose first answer was lost learns the same fee: it was charged once.
        answer["fee_charged"] = {"amount": str(fault.cancel_fee), "currency": fault.cancel_fee_currency}
    return web.json_response(answer)
