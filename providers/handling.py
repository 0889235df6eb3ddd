"""What every provider route does with a request around the ledger: the app's state,
reading the kind, the scenario's fault, the JSON body, the key and the hold TTL;
the injected latency; and the JSON refusal (``Reject``) when any is wrong.

Refusals are statuses from the one table the activities read back
(``trip.errors.ERROR_STATUS``), so a refusal here is exactly the error type
there.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from providers.latency import LatencyProfile
from providers.ledger import Ledger, LedgerConflict
from trip.errors import ERROR_STATUS
from trip.models import HOLD_MARGIN, MAX_CONFIRM_WITHIN, FlightRequest, Kind, Scenario
from trip.scenarios import ALWAYS, SCENARIOS, Fault

LEDGER = web.AppKey("ledger", Ledger)
STATS = web.AppKey("stats", dict)
LATENCY_OVERRIDE_MS = web.AppKey("latency_override_ms", object)
LATENCY_PROFILE = web.AppKey("latency_profile", object)
#: Per booking, how long each call of it took to answer here (``--latency-profile`` only).
ANSWER_MS = web.AppKey("answer_ms", dict)
#: Set on a request by ``injected_delay``: (booking id, "kind op"), for its answer time.
ANSWER_OF = web.RequestKey("answer_of", tuple)

#: The longest hold anyone may ask for: the longest confirmation window plus
#: the margin the workflow adds to it.
MAX_HOLD_TTL_S = (MAX_CONFIRM_WITHIN + HOLD_MARGIN).total_seconds()
SCENARIO_HEADER = "X-Scenario"


def error_response(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status)


class Reject(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.response = error_response(status, error, message)


def kind_of(request: web.Request) -> Kind:
    try:
        return Kind(request.match_info["kind"])
    except ValueError:
        raise Reject(
            404, "NotFound", f"unknown kind {request.match_info['kind']!r}; use car, hotel or flight"
        ) from None


def fault_of(request: web.Request, kind: Kind) -> Fault:
    name = request.headers.get(SCENARIO_HEADER, Scenario.HAPPY.value)
    try:
        return SCENARIOS[Scenario(name)].fault(kind)
    except ValueError:
        raise Reject(400, "BadRequest", f"unknown scenario {name!r}") from None


#: How deep a body may nest. The deepest real one is three levels (body,
#: ``details``, a field); past this the body is refused before anything walks it,
#: so no recursion (the JSON parser's, pydantic's, the encoder's) can run out of stack.
MAX_JSON_DEPTH = 16


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
        # The charset named in Content-Type picks the decoder; one Python does
        # not know is the client's mistake, not ours.
        text = raw.decode(request.charset or "utf-8")
    except LookupError:
        raise Reject(
            415, "UnsupportedMediaType", f"unknown charset {request.charset!r}; send the body as UTF-8 JSON"
        ) from None
    except UnicodeDecodeError:
        raise Reject(400, "BadRequest", "the body must be a JSON object") from None
    if _nesting(text) > MAX_JSON_DEPTH:
        raise Reject(400, "BadRequest", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        raise Reject(400, "BadRequest", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Reject(400, "BadRequest", "the body must be a JSON object")
    try:
        # JSON's \u escapes can spell a lone surrogate, which is no character:
        # it cannot be stored (or sent back), so refuse it here, not with a 500.
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise Reject(400, "BadRequest", "the body has a \\u escape that is no character (a lone surrogate)") from None
    return body


def _nesting(text: str) -> int:
    """How deep the brackets of a JSON text nest, counted without parsing (no recursion).

    Brackets inside strings are skipped; for text that is not JSON the figure
    is only an estimate, and the parser refuses it anyway.
    """
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


async def injected_delay(request: web.Request, fault: Fault) -> None:
    latency: float = 0
    if fault.latency_ms:
        # --latency-ms replaces every scenario's latency (the benchmark uses it
        # to keep hundreds of sagas in flight at once).
        override = request.app[LATENCY_OVERRIDE_MS]
        latency = override if isinstance(override, int) else fault.latency_ms
    profile = request.app[LATENCY_PROFILE]
    if isinstance(profile, LatencyProfile):
        # Every route calls this after reading its body, so this re-reads aiohttp's cached bytes.
        booking_id = str((await request.json()).get("booking_id"))
        kind = request.match_info.get("kind", Kind.FLIGHT.value)  # /flight/tickets names no kind
        op = request.path.rsplit("/", 1)[-1]
        latency += profile.draw_ms(booking_id, kind, op)
        request[ANSWER_OF] = (booking_id, f"{kind} {op}")
    if latency:
        await asyncio.sleep(latency / 1000)


def failing(n: int, attempt: int) -> bool:
    return n == ALWAYS or attempt <= n


def resource_of(details: Any) -> str:
    """What inventory a booking draws on; ``Ledger`` works out which days."""
    if isinstance(details, FlightRequest):
        return f"{details.origin}->{details.destination}"
    return str(details.city)


def key_and_booking(key: Any, booking_id: Any) -> tuple[str, str]:
    if not isinstance(key, str) or not (1 <= len(key) <= 200):
        raise Reject(422, "InvalidBooking", "idempotency_key must be a string of 1 to 200 characters")
    if not isinstance(booking_id, str) or not (1 <= len(booking_id) <= 200):
        raise Reject(422, "InvalidBooking", "booking_id must be a string of 1 to 200 characters")
    return key, booking_id


def hold_ttl(body: dict[str, Any]) -> float | None:
    ttl = body.get("hold_ttl_s")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not (0 < ttl <= MAX_HOLD_TTL_S):
        raise Reject(
            422, "InvalidBooking", f"hold_ttl_s must be a number of seconds above 0 and at most {MAX_HOLD_TTL_S:g}"
        )
    return float(ttl)


def refused(exc: LedgerConflict) -> web.Response:
    return error_response(ERROR_STATUS[exc.error], exc.error, exc.message)
