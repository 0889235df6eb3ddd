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
                                             with ``key``, also how many requests reached each key;
                                             with ``booking_id`` (under ``--latency-profile``), how
                                             long each of that booking's calls took to answer
  GET  /callbacks/deliveries[?booking_id=...]  every attempt to deliver a confirmation callback
  GET  /health

A scenario whose provider confirms later (``flight-async``) answers a booking
``202`` with status ``pending`` and its own ``reference``; the service then
sends the signed callback itself (``providers.callbacks``).

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

This module builds the app; the routes the saga calls are ``providers.bookings``,
the operators' and the tests' ``providers.operations``, and what every route
does with a request ``providers.handling``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry.trace import TracerProvider

from providers.bookings import cancel, cancel_by_path, confirm, reserve, ticket
from providers.callbacks import SENDER, CallbackSender, list_deliveries
from providers.handling import (
    ANSWER_MS,
    ANSWER_OF,
    LATENCY_OVERRIDE_MS,
    LATENCY_PROFILE,
    LEDGER,
    STATS,
    Reject,
    error_response,
)
from providers.latency import LatencyProfile
from providers.ledger import Ledger
from providers.operations import health, lift_outage, list_reservations, set_inventory, stats
from providers.tracing import tracing_middleware

log = logging.getLogger("providers")


@web.middleware
async def errors_and_timing(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        response = await handler(request)
    except Reject as exc:
        response = exc.response
    except web.HTTPException as exc:
        response = error_response(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = error_response(500, "InternalError", "the provider failed unexpectedly; nothing was written")
    if request.path not in ("/stats", "/health"):
        data = request.app[STATS]
        data["requests"] += 1
        # Handling time without injected latency would be nicer, but the
        # benchmark wants what a caller sees from this process.
        data["handling_ms"].append((time.perf_counter() - started) * 1000)
        if len(data["handling_ms"]) > 100_000:
            del data["handling_ms"][:50_000]
        if ANSWER_OF in request:  # a call under a latency profile: the benchmark's limit reads it
            booking_id, call = request[ANSWER_OF]
            answers = request.app[ANSWER_MS]
            answers.setdefault(booking_id, {})[call] = data["handling_ms"][-1]
            if len(answers) > 100_000:  # bounded, like the handling times: drop the oldest half
                for old in list(answers)[:50_000]:
                    del answers[old]
    return response


def create_app(
    ledger: Ledger,
    *,
    latency_override_ms: int | None = None,
    latency_profile: LatencyProfile | None = None,
    tracer_provider: TracerProvider | None = None,
    callbacks: CallbackSender | None = None,
) -> web.Application:
    app = web.Application(
        # Tracing outermost, so its span covers the error handling and reports its status.
        middlewares=[tracing_middleware(tracer_provider), errors_and_timing],
        client_max_size=64 * 1024,
    )
    app[LEDGER] = ledger
    app[STATS] = {"requests": 0, "handling_ms": []}
    app[LATENCY_OVERRIDE_MS] = latency_override_ms
    app[LATENCY_PROFILE] = latency_profile
    app[ANSWER_MS] = {}
    # Without a receiver configured, pending bookings still answer 202; their
    # callbacks fail (recorded as such) and the saga's deadline undoes them.
    sender = callbacks or CallbackSender(ledger, base_url=None, secrets={})
    app[SENDER] = sender
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
    app.router.add_get("/callbacks/deliveries", list_deliveries)

    async def close_ledger(app: web.Application) -> None:
        await sender.close()
        ledger.close()

    app.on_cleanup.append(close_ledger)
    return app
