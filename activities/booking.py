"""Activities: thin adapters from the saga to the provider service.

Each activity makes one HTTP call and turns the answer into either a result or
a typed ``ApplicationError`` from ``trip.errors``. The type is the whole
answer: an activity never marks an error non-retryable itself, because the
step's retry policy decides which types end it (the pivot keeps asking where a
booking gives up). No fault logic lives here: the scenario name is only
forwarded to the provider.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from trip.errors import EXPECTED_HTTP_STATUSES, ErrorType, error_for_status
from trip.models import (
    CancellationFee,
    CancelRequest,
    CancelResult,
    FinalizeRequest,
    FinalizeResult,
    Kind,
    Money,
    Reservation,
    ReserveRequest,
    Ticket,
    TicketRequest,
)
from trip.steps import TICKET, step

M = TypeVar("M", bound=BaseModel)

SCENARIO_HEADER = "X-Scenario"
#: Time kept back from the activity's start-to-close timeout for reading the
#: answer and reporting the result, so that an HTTP timeout (a typed,
#: retryable ProviderTimeout) fires before Temporal's own, untyped one.
CALL_TIMEOUT_MARGIN_S = 2.0


def _fail(error: ErrorType, message: str, *, status: int | None = None) -> ApplicationError:
    info = activity.info()
    expected = status in EXPECTED_HTTP_STATUSES
    if expected:
        # The SDK logs a benign failure at DEBUG only; this is its one line.
        activity.logger.info("%s attempt %d: %s: %s", info.activity_type, info.attempt, error.value, message)
    return ApplicationError(
        message,
        {"attempt": info.attempt, "http_status": status},
        type=error.value,
        category=ApplicationErrorCategory.BENIGN if expected else ApplicationErrorCategory.UNSPECIFIED,
    )


def _provider_error_name(response: httpx.Response) -> object:
    """The answer's ``"error"`` field, if it is a JSON object that has one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def _provider_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    # A proxy or a broken provider may answer any JSON at all, not an object.
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(body)[:200]


def _answer_fields(kind: Kind, response: httpx.Response, *fields: str) -> dict[str, str]:
    """The string fields a success must carry; anything else is a protocol error.

    Retrying cannot turn a malformed success into a good one, so an ordinary
    step's policy ends it (the pivot's asks again: the ticket may be issued);
    it says what was missing instead of a bare KeyError.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    missing = [f for f in fields if not isinstance(body, dict) or not isinstance(body.get(f), str)]
    if missing:
        raise _fail(
            ErrorType.PROVIDER_PROTOCOL,
            f"{kind.value} provider answered {response.status_code} without {', '.join(missing)}:"
            f" {response.text[:200]!r}",
            status=response.status_code,
        )
    assert isinstance(body, dict)
    return {f: body[f] for f in fields}


def _optional_model(kind: Kind, response: httpx.Response, name: str, model: type[M]) -> M | None:
    """An optional object field of a success (a fee, say): absent is ``None``, malformed a protocol error."""
    try:
        value = response.json().get(name)
        return None if value is None else model.model_validate(value)
    except (ValueError, AttributeError) as exc:  # pydantic's ValidationError is a ValueError
        raise _fail(
            ErrorType.PROVIDER_PROTOCOL,
            f"{kind.value} provider answered a malformed {name}: {exc}"[:300],
            status=response.status_code,
        ) from None


def call_timeout_s(start_to_close: timedelta | None, default_s: float | None) -> float | None:
    """The HTTP timeout for one provider call of an activity with this timeout.

    The activity's start-to-close timeout less a margin for the activity to
    report a typed timeout itself: a tenth of it, at most
    ``CALL_TIMEOUT_MARGIN_S``. (Halving short timeouts cut a 3 s activity's
    call to 1.5 s, below the ``slow`` scenario's latency.) Without one (only
    schedule-to-close set) the client's own default applies.
    """
    if start_to_close is None or start_to_close <= timedelta(0):
        return default_s
    total = start_to_close.total_seconds()
    return total - min(CALL_TIMEOUT_MARGIN_S, total / 10)


class BookingActivities:
    """The nine activities, sharing one HTTP client per worker process."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def _call(self, kind: Kind, path: str, payload: dict[str, Any], scenario: str) -> httpx.Response:
        timeout = call_timeout_s(activity.info().start_to_close_timeout, self._http.timeout.read)
        try:
            response = await self._http.post(
                path, json=payload, headers={SCENARIO_HEADER: scenario}, timeout=httpx.Timeout(timeout)
            )
        except httpx.TimeoutException as exc:
            raise _fail(ErrorType.PROVIDER_TIMEOUT, f"{kind.value} provider did not answer in time ({exc!r})") from None
        except httpx.TransportError as exc:
            raise _fail(ErrorType.PROVIDER_UNAVAILABLE, f"{kind.value} provider unreachable ({exc!r})") from None
        if response.status_code < 300:
            return response
        message = f"{kind.value} provider answered {response.status_code}: {_provider_message(response)}"
        # The status says what family of answer it is; the body's "error" name
        # picks the exact type within it (409 SoldOut or TicketingRefused).
        error = error_for_status(response.status_code, _provider_error_name(response))
        if error is None:
            # Any other 4xx means we sent something the provider cannot accept:
            # a protocol error, which sending again cannot help.
            error = ErrorType.PROVIDER_UNAVAILABLE if response.status_code >= 500 else ErrorType.PROVIDER_PROTOCOL
        raise _fail(error, message, status=response.status_code)

    async def _reserve(self, kind: Kind, req: ReserveRequest) -> Reservation:
        if req.kind is not kind:
            raise _fail(ErrorType.INVALID_BOOKING, f"{step(kind).book} got a {req.kind.value} request")
        payload: dict[str, Any] = {
            "booking_id": req.booking_id,
            "idempotency_key": req.idempotency_key,
            "traveller": req.traveller.model_dump(mode="json"),
            "details": req.details.model_dump(mode="json"),
        }
        if req.hold_ttl_s is not None:
            payload["hold_ttl_s"] = req.hold_ttl_s
        response = await self._call(kind, f"/{kind.value}/reservations", payload, req.scenario.value)
        if response.status_code == 202:
            # Accepted, confirmed later by the provider's signed callback: the
            # workflow waits for it; the reference is what the callback names.
            body = _answer_fields(kind, response, "reservation_id", "reference")
            activity.logger.info("%s pending as %s (%s)", kind.value, body["reference"], req.idempotency_key)
            return Reservation(
                kind=kind,
                reservation_id=body["reservation_id"],
                confirmation=body["reference"],
                attempt=activity.info().attempt,
                pending=True,
                reference=body["reference"],
            )
        if req.hold_ttl_s is None:
            body = _answer_fields(kind, response, "reservation_id", "confirmation")
        else:
            # A provider that ignored the hold booked outright, and will not
            # know the hold when the saga confirms it: better to fail here,
            # where the step can still be undone.
            body = _answer_fields(kind, response, "reservation_id", "confirmation", "held_until")
        activity.logger.info("booked %s %s (%s)", kind.value, body["confirmation"], req.idempotency_key)
        return Reservation(
            kind=kind,
            reservation_id=body["reservation_id"],
            confirmation=body["confirmation"],
            attempt=activity.info().attempt,
            held_until=body.get("held_until"),
            cancellation_fee=_optional_model(kind, response, "cancellation_fee", CancellationFee),
        )

    async def _finalize(self, kind: Kind, req: FinalizeRequest) -> FinalizeResult:
        if req.kind is not kind:
            raise _fail(ErrorType.INVALID_BOOKING, f"{step(kind).finalize} got a {req.kind.value} request")
        response = await self._call(
            kind,
            f"/{kind.value}/confirmations",
            {"booking_id": req.booking_id, "idempotency_key": req.idempotency_key},
            req.scenario.value,
        )
        body = _answer_fields(kind, response, "confirmation", "outcome")
        activity.logger.info("finalize %s %s: %s", kind.value, req.idempotency_key, body["outcome"])
        return FinalizeResult(
            kind=kind,
            idempotency_key=req.idempotency_key,
            confirmation=body["confirmation"],
            attempt=activity.info().attempt,
        )

    async def _cancel(self, kind: Kind, req: CancelRequest) -> CancelResult:
        # The key travels in the JSON body, never in the URL: a path segment is
        # percent-decoded by the server (``x%41y`` arrives as ``xAy``) and a
        # ``/``, ``?`` or ``#`` in it changes the route, so the undo would miss
        # the key it must release.
        response = await self._call(
            kind,
            f"/{kind.value}/cancellations",
            {"booking_id": req.booking_id, "idempotency_key": req.idempotency_key},
            req.scenario.value,
        )
        outcome = _answer_fields(kind, response, "outcome")["outcome"]
        activity.logger.info("undo %s %s: %s", kind.value, req.idempotency_key, outcome)
        return CancelResult(
            kind=kind,
            idempotency_key=req.idempotency_key,
            outcome=outcome,
            attempt=activity.info().attempt,
            fee_charged=_optional_model(kind, response, "fee_charged", Money),
        )

    @activity.defn(name=step(Kind.CAR).book)
    async def book_car(self, req: ReserveRequest) -> Reservation:
        return await self._reserve(Kind.CAR, req)

    @activity.defn(name=step(Kind.HOTEL).book)
    async def book_hotel(self, req: ReserveRequest) -> Reservation:
        return await self._reserve(Kind.HOTEL, req)

    @activity.defn(name=step(Kind.FLIGHT).book)
    async def book_flight(self, req: ReserveRequest) -> Reservation:
        return await self._reserve(Kind.FLIGHT, req)

    @activity.defn(name=TICKET)
    async def ticket_flight(self, req: TicketRequest) -> Ticket:
        """The pivot: a retry with the same key returns the same ticket, never a second one."""
        response = await self._call(
            Kind.FLIGHT,
            "/flight/tickets",
            {"booking_id": req.booking_id, "idempotency_key": req.idempotency_key},
            req.scenario.value,
        )
        body = _answer_fields(Kind.FLIGHT, response, "ticket_number", "confirmation")
        activity.logger.info("ticketed %s (%s)", body["ticket_number"], req.idempotency_key)
        return Ticket(
            ticket_number=body["ticket_number"], confirmation=body["confirmation"], attempt=activity.info().attempt
        )

    @activity.defn(name=step(Kind.CAR).finalize)
    async def finalize_car(self, req: FinalizeRequest) -> FinalizeResult:
        return await self._finalize(Kind.CAR, req)

    @activity.defn(name=step(Kind.HOTEL).finalize)
    async def finalize_hotel(self, req: FinalizeRequest) -> FinalizeResult:
        return await self._finalize(Kind.HOTEL, req)

    @activity.defn(name=step(Kind.CAR).undo)
    async def undo_book_car(self, req: CancelRequest) -> CancelResult:
        return await self._cancel(Kind.CAR, req)

    @activity.defn(name=step(Kind.HOTEL).undo)
    async def undo_book_hotel(self, req: CancelRequest) -> CancelResult:
        return await self._cancel(Kind.HOTEL, req)

    @activity.defn(name=step(Kind.FLIGHT).undo)
    async def undo_book_flight(self, req: CancelRequest) -> CancelResult:
        return await self._cancel(Kind.FLIGHT, req)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.book_car,
            self.book_hotel,
            self.book_flight,
            self.undo_book_car,
            self.undo_book_hotel,
            self.undo_book_flight,
            self.ticket_flight,
            self.finalize_car,
            self.finalize_hotel,
        ]


def make_http_client(base_url: str, *, timeout_s: float = 5.0, max_connections: int = 100) -> httpx.AsyncClient:
    """The one HTTP client a worker shares across all activity executions.

    ``timeout_s`` applies only to an activity without a start-to-close
    timeout: each call otherwise derives its own (``call_timeout_s``).
    """
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )
