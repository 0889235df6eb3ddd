"""Activities: thin adapters from the saga to the provider service.

Each activity makes one HTTP call and turns the answer into either a result or
a typed ``ApplicationError`` from ``trip.errors``: business refusals are
non-retryable, infrastructure trouble is retryable. No fault logic lives here:
the scenario name is only forwarded to the provider.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from trip.errors import HTTP_STATUS_ERRORS, ErrorType
from trip.models import CancelRequest, CancelResult, Kind, Reservation, ReserveRequest

SCENARIO_HEADER = "X-Scenario"


def _fail(error: ErrorType, message: str, *, retryable: bool, status: int | None = None) -> ApplicationError:
    info = activity.info()
    return ApplicationError(
        message,
        {"attempt": info.attempt, "http_status": status},
        type=error.value,
        non_retryable=not retryable,
    )


def _provider_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body.get("message") or body)
    except ValueError:
        return response.text[:200] or response.reason_phrase


class BookingActivities:
    """The six activities, sharing one HTTP client per worker process."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def _call(self, kind: Kind, path: str, payload: dict[str, Any], scenario: str) -> httpx.Response:
        try:
            response = await self._http.post(path, json=payload, headers={SCENARIO_HEADER: scenario})
        except httpx.TimeoutException as exc:
            raise _fail(
                ErrorType.PROVIDER_TIMEOUT, f"{kind.value} provider did not answer in time ({exc!r})", retryable=True
            ) from None
        except httpx.TransportError as exc:
            raise _fail(
                ErrorType.PROVIDER_UNAVAILABLE, f"{kind.value} provider unreachable ({exc!r})", retryable=True
            ) from None
        if response.status_code < 300:
            return response
        message = f"{kind.value} provider answered {response.status_code}: {_provider_message(response)}"
        mapped = HTTP_STATUS_ERRORS.get(response.status_code)
        if mapped is not None:
            error, retryable = mapped
        elif response.status_code >= 500:
            error, retryable = ErrorType.PROVIDER_UNAVAILABLE, True
        else:
            # Any other 4xx means we sent something the provider cannot accept:
            # sending it again cannot help.
            error, retryable = ErrorType.PROVIDER_PROTOCOL, False
        raise _fail(error, message, retryable=retryable, status=response.status_code)

    async def _reserve(self, kind: Kind, req: ReserveRequest) -> Reservation:
        if req.kind is not kind:
            raise _fail(ErrorType.INVALID_BOOKING, f"book_{kind.value} got a {req.kind.value} request", retryable=False)
        payload = {
            "booking_id": req.booking_id,
            "idempotency_key": req.idempotency_key,
            "traveller": req.traveller.model_dump(mode="json"),
            "details": req.details.model_dump(mode="json"),
        }
        response = await self._call(kind, f"/{kind.value}/reservations", payload, req.scenario.value)
        body = response.json()
        activity.logger.info("booked %s %s (%s)", kind.value, body["confirmation"], req.idempotency_key)
        return Reservation(
            kind=kind,
            reservation_id=body["reservation_id"],
            confirmation=body["confirmation"],
            attempt=activity.info().attempt,
        )

    async def _cancel(self, kind: Kind, req: CancelRequest) -> CancelResult:
        response = await self._call(
            kind,
            f"/{kind.value}/reservations/{req.idempotency_key}/cancel",
            {"booking_id": req.booking_id},
            req.scenario.value,
        )
        outcome = response.json()["outcome"]
        activity.logger.info("undo %s %s: %s", kind.value, req.idempotency_key, outcome)
        return CancelResult(
            kind=kind, idempotency_key=req.idempotency_key, outcome=outcome, attempt=activity.info().attempt
        )

    @activity.defn(name="book_car")
    async def book_car(self, req: ReserveRequest) -> Reservation:
        return await self._reserve(Kind.CAR, req)

    @activity.defn(name="book_hotel")
    async def book_hotel(self, req: ReserveRequest) -> Reservation:
        return await self._reserve(Kind.HOTEL, req)

    @activity.defn(name="book_flight")
    async def book_flight(self, req: ReserveRequest) -> Reservation:
        return await self._reserve(Kind.FLIGHT, req)

    @activity.defn(name="undo_book_car")
    async def undo_book_car(self, req: CancelRequest) -> CancelResult:
        return await self._cancel(Kind.CAR, req)

    @activity.defn(name="undo_book_hotel")
    async def undo_book_hotel(self, req: CancelRequest) -> CancelResult:
        return await self._cancel(Kind.HOTEL, req)

    @activity.defn(name="undo_book_flight")
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
        ]


def make_http_client(base_url: str, *, timeout_s: float = 5.0, max_connections: int = 100) -> httpx.AsyncClient:
    """The one HTTP client a worker shares across all activity executions."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )
