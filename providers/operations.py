"""The routes for operators and tests: read the ledger, set capacity, lift an undo
outage, request statistics, health. None of them injects a fault.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from providers.handling import ANSWER_MS, LEDGER, STATS, error_response, json_body, kind_of
from trip.models import Kind

#: The most a day can hold: far above any test or benchmark, far below what
#: SQLite's 64-bit integers overflow at.
MAX_CAPACITY = 1_000_000_000


async def list_reservations(request: web.Request) -> web.Response:
    booking_id = request.query.get("booking_id")
    return web.json_response(request.app[LEDGER].list(booking_id))


async def set_inventory(request: web.Request) -> web.Response:
    kind = kind_of(request)
    body = await json_body(request)
    resource, day, capacity = body.get("resource"), body.get("day"), body.get("capacity")
    if not isinstance(resource, str) or not (1 <= len(resource) <= 200):
        return error_response(422, "InvalidBooking", "resource must be a string of 1 to 200 characters")
    try:
        # Stored as the ledger spells days (YYYY-MM-DD), so "20270104" and
        # "2027-01-04" are one day and a capacity set for it really applies.
        day = date.fromisoformat(day).isoformat() if isinstance(day, str) and len(day) <= 10 else None
    except ValueError:
        day = None
    if day is None:
        return error_response(422, "InvalidBooking", "day must be a date, YYYY-MM-DD (for example 2030-01-31)")
    if not isinstance(capacity, int) or isinstance(capacity, bool) or not (0 <= capacity <= MAX_CAPACITY):
        return error_response(422, "InvalidBooking", f"capacity must be an integer from 0 to {MAX_CAPACITY}")
    request.app[LEDGER].set_capacity(kind=kind.value, resource=resource, day=day, capacity=capacity)
    return web.json_response({"kind": kind.value, "resource": resource, "day": day, "capacity": capacity})


async def lift_outage(request: web.Request) -> web.Response:
    body = await json_body(request)
    booking_id, kind_name = body.get("booking_id"), body.get("kind")
    if not isinstance(booking_id, str) or not (1 <= len(booking_id) <= 200):
        return error_response(422, "InvalidBooking", "booking_id must be a string of 1 to 200 characters")
    if not isinstance(kind_name, str) or kind_name not in set(Kind):
        return error_response(422, "InvalidBooking", "kind must be one of: car, hotel, flight")
    kind = Kind(kind_name)
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
    booking_ids = request.query.getall("booking_id", [])
    if booking_ids:
        answers = request.app[ANSWER_MS]
        body["answer_ms"] = {b: answers.get(b, {}) for b in booking_ids}
    return web.json_response(body)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
