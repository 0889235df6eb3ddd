"""Activities against the real provider service: real HTTP, real SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import BookingActivities, make_http_client
from tests.conftest import ProviderService, free_port, make_request, wait_until
from trip.errors import ErrorType
from trip.models import CancelRequest, Kind, Reservation, ReserveRequest, Scenario


@pytest_asyncio.fixture
async def acts(providers: ProviderService) -> AsyncIterator[BookingActivities]:
    async with make_http_client(providers.url) as http:
        yield BookingActivities(http)


def reserve_req(kind: Kind, scenario: Scenario = Scenario.HAPPY, booking_id: str | None = None) -> ReserveRequest:
    booking_id = booking_id or f"act-{uuid.uuid4().hex[:10]}"
    req = make_request(scenario)
    details = {Kind.CAR: req.car, Kind.HOTEL: req.hotel, Kind.FLIGHT: req.flight}[kind]
    return ReserveRequest(
        kind=kind,
        booking_id=booking_id,
        idempotency_key=f"{booking_id}:{kind.value}",
        scenario=scenario,
        traveller=req.traveller,
        details=details,
    )


def cancel_req(req: ReserveRequest) -> CancelRequest:
    return CancelRequest(
        kind=req.kind, booking_id=req.booking_id, idempotency_key=req.idempotency_key, scenario=req.scenario
    )


async def test_repeated_booking_calls_book_once(acts: BookingActivities, providers: ProviderService) -> None:
    env = ActivityEnvironment()
    req = reserve_req(Kind.HOTEL)
    results: list[Reservation] = [await env.run(acts.book_hotel, req) for _ in range(3)]
    assert len({r.confirmation for r in results}) == 1
    assert providers.active_kinds(req.booking_id) == ["hotel"]


async def test_undo_cancels_what_was_booked_and_is_idempotent(
    acts: BookingActivities, providers: ProviderService
) -> None:
    env = ActivityEnvironment()
    req = reserve_req(Kind.CAR)
    await env.run(acts.book_car, req)
    outcomes = [(await env.run(acts.undo_book_car, cancel_req(req))).outcome for _ in range(2)]
    assert outcomes == ["cancelled", "already_cancelled"]
    assert providers.active_kinds(req.booking_id) == []


async def test_undo_of_a_booking_that_never_happened_succeeds(acts: BookingActivities) -> None:
    result = await ActivityEnvironment().run(acts.undo_book_flight, cancel_req(reserve_req(Kind.FLIGHT)))
    assert result.outcome == "not_booked"


@pytest.mark.parametrize(
    ("scenario", "kind", "error", "retryable"),
    [
        (Scenario.FLIGHT_SOLD_OUT, Kind.FLIGHT, ErrorType.SOLD_OUT, False),
        (Scenario.FLIGHT_FLAKY, Kind.FLIGHT, ErrorType.PROVIDER_UNAVAILABLE, True),
        (Scenario.HOTEL_DOWN, Kind.HOTEL, ErrorType.PROVIDER_UNAVAILABLE, True),
    ],
)
async def test_provider_answers_map_to_typed_errors(
    acts: BookingActivities, scenario: Scenario, kind: Kind, error: ErrorType, retryable: bool
) -> None:
    activity = {Kind.CAR: acts.book_car, Kind.HOTEL: acts.book_hotel, Kind.FLIGHT: acts.book_flight}[kind]
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(activity, reserve_req(kind, scenario))
    assert info.value.type == error.value
    assert info.value.non_retryable is (not retryable)
    assert info.value.details[0]["attempt"] == 1


async def test_invalid_booking_is_non_retryable(acts: BookingActivities) -> None:
    req = reserve_req(Kind.CAR)
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(acts.book_hotel, req)  # a car request sent to the hotel activity
    assert info.value.type == ErrorType.INVALID_BOOKING.value and info.value.non_retryable


async def test_connection_refused_is_retryable() -> None:
    async with make_http_client(f"http://127.0.0.1:{free_port()}") as http:
        with pytest.raises(ApplicationError) as info:
            await ActivityEnvironment().run(BookingActivities(http).book_car, reserve_req(Kind.CAR))
    assert info.value.type == ErrorType.PROVIDER_UNAVAILABLE.value and not info.value.non_retryable


async def test_timeout_is_retryable_and_the_retry_finds_the_booking(
    providers: ProviderService,
) -> None:
    # The slow scenario answers after 1.5 s; a 0.3 s client timeout gives up
    # first, yet the provider books. The retry must return that same booking.
    req = reserve_req(Kind.CAR, Scenario.SLOW)
    async with make_http_client(providers.url, timeout_s=0.3) as http:
        with pytest.raises(ApplicationError) as info:
            await ActivityEnvironment().run(BookingActivities(http).book_car, req)
    assert info.value.type == ErrorType.PROVIDER_TIMEOUT.value and not info.value.non_retryable
    await wait_until(lambda: providers.active_kinds(req.booking_id) == ["car"], what="the late booking")
    async with make_http_client(providers.url, timeout_s=5) as http:
        booked = await ActivityEnvironment().run(BookingActivities(http).book_car, req)
    rows = providers.reservations(req.booking_id)
    assert [r["confirmation"] for r in rows] == [booked.confirmation]


def test_provider_stats_count_requests(providers: ProviderService) -> None:
    before = httpx.get(f"{providers.url}/stats", timeout=5).json()
    providers.reservations()
    after = httpx.get(f"{providers.url}/stats", timeout=5).json()
    assert after["requests"] == before["requests"] + 1
    assert after["p50_ms"] is not None and after["p50_ms"] >= 0
