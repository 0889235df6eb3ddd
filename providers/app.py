"""HTTP JSON API of the provider service (aiohttp).

Routes:
  POST /{kind}/reservations                  book, keyed by ``idempotency_key``; with
                                             ``hold_ttl_s`` place a hold instead (status ``held``,
                                             answer has ``held_until``) that lapses to ``expired``
  POST /{car,hotel}/confirmations            turn a hold into a booking ``{"booking_id",
                                             "idempotency_key"}``: 410 HoldExpired once it lapsed
  POST /flight/tickets                       issue the ticket for a held flight (same body); a
                                             retry returns the same ticket number
  POST /{kind}/cancellations                 undo ``{"booking_id", "idempotency_key"}``; a no-op
                                             if nothing was booked or the hold lapsed; refused
                                             (422) for a ticketed flight
  POST /{kind}/reservations/{key}/cancel     the same, key in the path (kept for workers of the
                                             previous release; aiohttp decodes ``%XX`` in it)
  GET  /reservations[?booking_id=...]        the ledger, for tests and operators
  PUT  /inventory/{kind}                     set capacity (makes "sold out" real)
  POST /admin/outages/lift                   end a booking's undo outage (car-cancel-outage):
                                             ``{"booking_id": ..., "kind": "car"}``
  GET  /stats[?key=...&key=...]              request counts, handling times, reservations by status;
                                             with ``key``, also how many requests reached each key
  GET  /health

A reused ``idempotency_key`` returns the stored booking only for the same
request (kind, booking id, traveller, details); with different content it is a
422 ``InvalidBooking``. ``hold_ttl_s`` is not part of that comparison: the
first call decides whether the key is a hold and when it lapses, and a retry
gets that same hold back (it never extends it). An undo, a confirmation or a
ticket is refused (422) for a key that is not its booking's; a confirmation or
a ticket also for a key nothing was ever held under (there is nothing to
finalize, and a retry cannot change that).

Holds lapse lazily (see ``providers.ledger``): every request settles the holds
whose time has passed before it reads or writes anything.

Every answer is JSON. Bad requests get a 4xx with ``{"error", "message"}``;
an unexpected exception becomes a JSON 500 and rolls back its transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from opentelemetry.trace import TracerProvider
from pydantic import ValidationError

from providers.ledger import Ledger, LedgerConflict
from providers.tracing import tracing_middleware
from trip.errors import ERROR_STATUS, ErrorType
from trip.models import (
    HOLD_MARGIN,
    MAX_CONFIRM_WITHIN,
    CarRequest,
    FlightRequest,
    HotelRequest,
    Kind,
    Scenario,
    Traveller,
)
from trip.scenarios import ALWAYS, SCENARIOS, Fault

log = logging.getLogger("providers")

LEDGER = web.AppKey("ledger", Ledger)
STATS = web.AppKey("stats", dict)
LATENCY_OVERRIDE_MS = web.AppKey("latency_override_ms", object)

_DETAILS: dict[Kind, type[CarRequest] | type[HotelRequest] | type[FlightRequest]] = {
    Kind.CAR: CarRequest,
    Kind.HOTEL: HotelRequest,
    Kind.FLIGHT: FlightRequest,
}
#: Ledger refusal → HTTP status: the inverse of the one table the activities read.
_ERROR_STATUS = ERROR_STATUS
#: The longest hold anyone may ask for: the longest confirmation window plus
#: the margin the workflow adds to it.
MAX_HOLD_TTL_S = (MAX_CONFIRM_WITHIN + HOLD_MARGIN).total_seconds()
SCENARIO_HEADER = "X-Scenario"


def _error(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status)


class _Reject(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.response = _error(status, error, message)


def _kind(request: web.Request) -> Kind:
    try:
        return Kind(request.match_info["kind"])
    except ValueError:
        raise _Reject(
            404, "NotFound", f"unknown kind {request.match_info['kind']!r}; use car, hotel or flight"
        ) from None


def _fault(request: web.Request, kind: Kind) -> Fault:
    name = request.headers.get(SCENARIO_HEADER, Scenario.HAPPY.value)
    try:
        return SCENARIOS[Scenario(name)].fault(kind)
    except ValueError:
        raise _Reject(400, "BadRequest", f"unknown scenario {name!r}") from None


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Reject(400, "BadRequest", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _Reject(400, "BadRequest", "the body must be a JSON object")
    try:
        # JSON's \u escapes can spell a lone surrogate, which is no character:
        # it cannot be stored (or sent back), so refuse it here, not with a 500.
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise _Reject(400, "BadRequest", "the body has a \\u escape that is no character (a lone surrogate)") from None
    return body


async def _delay(request: web.Request, fault: Fault) -> None:
    if fault.latency_ms:
        # --latency-ms replaces every scenario's latency (the benchmark uses it
        # to keep hundreds of sagas in flight at once).
        override = request.app[LATENCY_OVERRIDE_MS]
        latency = override if isinstance(override, int) else fault.latency_ms
        await asyncio.sleep(latency / 1000)


def _failing(n: int, attempt: int) -> bool:
    return n == ALWAYS or attempt <= n


def _resource(details: Any) -> str:
    """What inventory a booking draws on; ``Ledger`` works out which days."""
    if isinstance(details, FlightRequest):
        return f"{details.origin}->{details.destination}"
    return str(details.city)


def _key_and_booking(key: Any, booking_id: Any) -> tuple[str, str]:
    if not isinstance(key, str) or not (1 <= len(key) <= 200):
        raise _Reject(422, "InvalidBooking", "idempotency_key must be a string of 1 to 200 characters")
    if not isinstance(booking_id, str) or not (1 <= len(booking_id) <= 200):
        raise _Reject(422, "InvalidBooking", "booking_id must be a string of 1 to 200 characters")
    return key, booking_id


def _hold_ttl(body: dict[str, Any]) -> float | None:
    ttl = body.get("hold_ttl_s")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not (0 < ttl <= MAX_HOLD_TTL_S):
        raise _Reject(
            422, "InvalidBooking", f"hold_ttl_s must be a number of seconds above 0 and at most {MAX_HOLD_TTL_S:g}"
        )
    return float(ttl)


def _refused(exc: LedgerConflict) -> web.Response:
    return _error(_ERROR_STATUS[exc.error], exc.error, exc.message)


async def reserve(request: web.Request) -> web.Response:
    kind = _kind(request)
    fault = _fault(request, kind)
    body = await _json_body(request)
    key, booking_id = _key_and_booking(body.get("idempotency_key"), body.get("booking_id"))
    hold_ttl_s = _hold_ttl(body)
    try:
        traveller = Traveller.model_validate(body.get("traveller"))
        details = _DETAILS[kind].model_validate(body.get("details"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return _error(422, "InvalidBooking", f"{where}: {first['msg']}")

    ledger = request.app[LEDGER]
    await _delay(request, fault)
    # No await from here on: peeking at the attempt number and counting it
    # cannot interleave with another request for the same key.
    attempt = ledger.next_attempt(key, "reserve")
    if _failing(fault.fail_first, attempt):
        ledger.count_attempt(key, "reserve")
        return _error(503, "Unavailable", f"{kind.value} provider is temporarily unavailable (attempt {attempt})")
    try:
        outcome = ledger.reserve(
            kind=kind.value,
            key=key,
            booking_id=booking_id,
            resource=_resource(details),
            traveller=traveller.model_dump(mode="json"),
            details=details.model_dump(mode="json"),
            force_sold_out=fault.sold_out,
            hold_ttl_s=hold_ttl_s,
        )
    except LedgerConflict as exc:
        # A refusal is not an attempt: the ledger stays exactly as it was.
        return _refused(exc)
    ledger.count_attempt(key, "reserve")
    return web.json_response(outcome.row, status=201 if outcome.created else 200)


async def confirm(request: web.Request) -> web.Response:
    """Finalize a held car or hotel; a retry answers ``already_confirmed`` with the same confirmation."""
    kind = _kind(request)
    if kind is Kind.FLIGHT:
        raise _Reject(404, "NotFound", "a flight is not confirmed but ticketed: POST /flight/tickets")
    fault = _fault(request, kind)
    body = await _json_body(request)
    key, booking_id = _key_and_booking(body.get("idempotency_key"), body.get("booking_id"))
    ledger = request.app[LEDGER]
    await _delay(request, fault)
    attempt = ledger.next_attempt(key, "finalize")  # as in reserve: a refusal is not an attempt
    if _failing(fault.finalize_fail_first, attempt):
        ledger.count_attempt(key, "finalize")
        return _error(503, "Unavailable", f"{kind.value} provider cannot confirm right now (attempt {attempt})")
    try:
        row, outcome = ledger.confirm(kind=kind.value, key=key, booking_id=booking_id)
    except LedgerConflict as exc:
        return _refused(exc)
    ledger.count_attempt(key, "finalize")
    return web.json_response(
        {"kind": kind.value, "idempotency_key": key, "confirmation": row["confirmation"], "outcome": outcome}
    )


async def ticket(request: web.Request) -> web.Response:
    """Issue the ticket for a held flight: the point of no return, so never twice."""
    fault = _fault(request, Kind.FLIGHT)
    body = await _json_body(request)
    key, booking_id = _key_and_booking(body.get("idempotency_key"), body.get("booking_id"))
    await _delay(request, fault)
    if fault.ticket_refused:
        error = ErrorType.TICKETING_REFUSED.value
        return _error(_ERROR_STATUS[error], error, "the airline refused to issue the ticket for this booking")
    try:
        row, outcome = request.app[LEDGER].ticket(key=key, booking_id=booking_id)
    except LedgerConflict as exc:
        return _refused(exc)
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
    body = await _json_body(request)
    return await _cancel(request, body.get("idempotency_key"), body)


async def cancel_by_path(request: web.Request) -> web.Response:
    """The previous release's undo route, kept so its workers still work mid-deploy.

    aiohttp hands over the *decoded* path segment, so a key with ``%XX`` in it
    arrives changed; ``Ledger.cancel`` then refuses it as another booking's key
    rather than voiding it.
    """
    body = await _json_body(request)
    return await _cancel(request, request.match_info["key"], body)


async def _cancel(request: web.Request, key: Any, body: dict[str, Any]) -> web.Response:
    kind = _kind(request)
    fault = _fault(request, kind)
    key, booking_id = _key_and_booking(key, body.get("booking_id"))
    ledger = request.app[LEDGER]
    await _delay(request, fault)
    attempt = ledger.next_attempt(key, "cancel")  # as in reserve: no await until it is counted
    if _failing(fault.cancel_fail_first, attempt):
        ledger.count_attempt(key, "cancel")
        return _error(503, "Unavailable", f"{kind.value} provider cannot cancel right now (attempt {attempt})")
    if fault.cancel_outage and not ledger.outage_lifted(booking_id=booking_id, kind=kind.value):
        ledger.count_attempt(key, "cancel")
        return _error(503, "Unavailable", f"{kind.value} provider outage: cancellations are down until it is lifted")
    try:
        outcome = ledger.cancel(kind=kind.value, key=key, booking_id=booking_id)
    except LedgerConflict as exc:
        return _refused(exc)
    ledger.count_attempt(key, "cancel")
    return web.json_response({"kind": kind.value, "idempotency_key": key, "outcome": outcome})


async def list_reservations(request: web.Request) -> web.Response:
    booking_id = request.query.get("booking_id")
    return web.json_response(request.app[LEDGER].list(booking_id))


async def set_inventory(request: web.Request) -> web.Response:
    kind = _kind(request)
    body = await _json_body(request)
    resource, day, capacity = body.get("resource"), body.get("day"), body.get("capacity")
    if not isinstance(resource, str) or not resource or not isinstance(day, str) or not day:
        return _error(422, "InvalidBooking", "resource and day must be non-empty strings")
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
        return _error(422, "InvalidBooking", "capacity must be a non-negative integer")
    request.app[LEDGER].set_capacity(kind=kind.value, resource=resource, day=day, capacity=capacity)
    return web.json_response({"kind": kind.value, "resource": resource, "day": day, "capacity": capacity})


async def lift_outage(request: web.Request) -> web.Response:
    body = await _json_body(request)
    booking_id, kind_name = body.get("booking_id"), body.get("kind")
    if not isinstance(booking_id, str) or not (1 <= len(booking_id) <= 200):
        return _error(422, "InvalidBooking", "booking_id must be a string of 1 to 200 characters")
    try:
        kind = Kind(kind_name)
    except ValueError:
        return _error(422, "InvalidBooking", "kind must be one of: car, hotel, flight")
    request.app[LEDGER].lift_outage(booking_id=booking_id, kind=kind.value)
    return web.json_response({"booking_id": booking_id, "kind": kind.value, "outage": "lifted"})


async def stats(request: web.Request) -> web.Response:
    data = request.app[STATS]
    times = sorted(data["handling_ms"])

    def pct(p: float) -> float | None:
        return round(times[min(len(times) - 1, int(p * len(times)))], 3) if times else None

    body: dict[str, Any] = {
        "requests": data["requests"],
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "reservations": request.app[LEDGER].counts(),
    }
    keys = request.query.getall("key", [])
    if keys:
        # One row per key however often it is asked for: these show the repeats.
        body["attempts"] = request.app[LEDGER].attempts(keys)
    return web.json_response(body)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@web.middleware
async def errors_and_timing(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        response = await handler(request)
    except _Reject as exc:
        response = exc.response
    except web.HTTPException as exc:
        response = _error(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = _error(500, "InternalError", "the provider failed unexpectedly; nothing was written")
    if request.path not in ("/stats", "/health"):
        data = request.app[STATS]
        data["requests"] += 1
        # Handling time without injected latency would be nicer, but the
        # benchmark wants what a caller sees from this process.
        data["handling_ms"].append((time.perf_counter() - started) * 1000)
        if len(data["handling_ms"]) > 100_000:
            del data["handling_ms"][:50_000]
    return response


def create_app(
    ledger: Ledger, *, latency_override_ms: int | None = None, tracer_provider: TracerProvider | None = None
) -> web.Application:
    app = web.Application(
        # Tracing outermost, so its span covers the error handling and reports its status.
        middlewares=[tracing_middleware(tracer_provider), errors_and_timing],
        client_max_size=64 * 1024,
    )
    app[LEDGER] = ledger
    app[STATS] = {"requests": 0, "handling_ms": []}
    app[LATENCY_OVERRIDE_MS] = latency_override_ms
    app.router.add_post("/{kind}/reservations", reserve)
    app.router.add_post("/{kind}/confirmations", confirm)
    app.router.add_post("/flight/tickets", ticket)
    app.router.add_post("/{kind}/cancellations", cancel)
    app.router.add_post("/{kind}/reservations/{key}/cancel", cancel_by_path)
    app.router.add_get("/reservations", list_reservations)
    app.router.add_put("/inventory/{kind}", set_inventory)
    app.router.add_post("/admin/outages/lift", lift_outage)
    app.router.add_get("/stats", stats)
    app.router.add_get("/health", health)

    async def close_ledger(app: web.Application) -> None:
        ledger.close()

    app.on_cleanup.append(close_ledger)
    return app
