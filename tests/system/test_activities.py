"""Activities against the real provider service: real HTTP, real SQLite."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from temporalio.activity import _Definition
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import BookingActivities, make_http_client
from tests.conftest import ProviderService, free_port, make_request, wait_until
from trip.errors import NON_RETRYABLE_BUSINESS_ERRORS, STEP_NON_RETRYABLE_ERRORS, ErrorType
from trip.models import (
    CancelRequest,
    FinalizeRequest,
    Kind,
    Reservation,
    ReserveRequest,
    Scenario,
    TicketRequest,
)
from trip.steps import ALL_ACTIVITIES


def ends_a_step(err: ApplicationError) -> bool:
    """The contract: an activity never flags an error itself; the step's retry policy ends it by type."""
    assert not err.non_retryable, "the step's policy decides, not the activity"
    return err.type in STEP_NON_RETRYABLE_ERRORS


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
    assert ends_a_step(info.value) is (not retryable)
    assert info.value.details[0]["attempt"] == 1


async def test_invalid_booking_ends_a_step(acts: BookingActivities) -> None:
    req = reserve_req(Kind.CAR)
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(acts.book_hotel, req)  # a car request sent to the hotel activity
    assert info.value.type == ErrorType.INVALID_BOOKING.value and ends_a_step(info.value)


async def test_connection_refused_is_retryable() -> None:
    async with make_http_client(f"http://127.0.0.1:{free_port()}") as http:
        with pytest.raises(ApplicationError) as info:
            await ActivityEnvironment().run(BookingActivities(http).book_car, reserve_req(Kind.CAR))
    assert info.value.type == ErrorType.PROVIDER_UNAVAILABLE.value and not ends_a_step(info.value)


async def test_timeout_is_retryable_and_the_retry_finds_the_booking(
    acts: BookingActivities, providers: ProviderService
) -> None:
    # The slow scenario answers after 1.5 s; an activity with a 1 s
    # start-to-close timeout gives its HTTP call less than that, yet the
    # provider books. The retry, with time enough, must return that same booking.
    req = reserve_req(Kind.CAR, Scenario.SLOW)
    short = ActivityEnvironment()
    short.info = dataclasses.replace(short.info, start_to_close_timeout=timedelta(seconds=1))
    with pytest.raises(ApplicationError) as info:
        await short.run(acts.book_car, req)
    assert info.value.type == ErrorType.PROVIDER_TIMEOUT.value and not ends_a_step(info.value)
    await wait_until(lambda: providers.active_kinds(req.booking_id) == ["car"], what="the late booking")
    enough = ActivityEnvironment()
    enough.info = dataclasses.replace(enough.info, start_to_close_timeout=timedelta(seconds=10))
    booked = await enough.run(acts.book_car, req)
    rows = providers.reservations(req.booking_id)
    assert [r["confirmation"] for r in rows] == [booked.confirmation]


def test_provider_stats_count_requests(providers: ProviderService) -> None:
    before = httpx.get(f"{providers.url}/stats", timeout=5).json()
    providers.reservations()
    after = httpx.get(f"{providers.url}/stats", timeout=5).json()
    assert after["requests"] == before["requests"] + 1
    assert after["p50_ms"] is not None and after["p50_ms"] >= 0


@pytest.mark.parametrize("booking_id", ["x%41y", "a?b#c", "a/b..%2F"])
async def test_undo_of_a_key_that_is_not_path_safe_releases_the_booking(
    acts: BookingActivities, providers: ProviderService, booking_id: str
) -> None:
    # The undo must cancel exactly the key that was booked, even one that is not safe in a URL path.
    req = reserve_req(Kind.CAR, booking_id=f"{booking_id}.{uuid.uuid4().hex[:6]}")
    env = ActivityEnvironment()
    await env.run(acts.book_car, req)
    result = await env.run(acts.undo_book_car, cancel_req(req))
    assert result.outcome == "cancelled"
    assert providers.active_kinds(req.booking_id) == []


def _mock_acts(status: int, content: bytes, content_type: str = "application/json") -> BookingActivities:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers={"content-type": content_type})

    return BookingActivities(httpx.AsyncClient(base_url="http://provider.test", transport=httpx.MockTransport(answer)))


@pytest.mark.parametrize("content", [b'["sold", "out"]', b'"sold out"', b"sold out", b"null"])
async def test_a_409_that_is_not_a_json_object_is_still_sold_out(content: bytes) -> None:
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(_mock_acts(409, content).book_car, reserve_req(Kind.CAR))
    assert info.value.type == ErrorType.SOLD_OUT.value and ends_a_step(info.value)


@pytest.mark.parametrize("content", [b'{"reservation_id": "r1"}', b"[]", b"not json", b'{"outcome": 3}'])
async def test_a_success_without_the_expected_fields_is_a_protocol_error_that_ends_a_step(content: bytes) -> None:
    acts = _mock_acts(200, content)
    req = reserve_req(Kind.CAR)
    with pytest.raises(ApplicationError) as booked:
        await ActivityEnvironment().run(acts.book_car, req)
    with pytest.raises(ApplicationError) as undone:
        await ActivityEnvironment().run(acts.undo_book_car, cancel_req(req))
    for info in (booked, undone):
        assert info.value.type == ErrorType.PROVIDER_PROTOCOL.value and ends_a_step(info.value)


@pytest.mark.parametrize(("start_to_close_s", "expected_s"), [(30.0, 28.0), (15.0, 13.5), (3.0, 2.7), (1.0, 0.9)])
async def test_each_call_times_out_before_the_activity_does(start_to_close_s: float, expected_s: float) -> None:
    # The HTTP timeout follows the activity's own start-to-close timeout, so a call gives up
    # (and can be retried) before Temporal gives up on the whole attempt.
    seen: list[dict[str, float]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(201, json={"reservation_id": "r", "confirmation": "CAR-1"})

    acts = BookingActivities(httpx.AsyncClient(base_url="http://provider.test", transport=httpx.MockTransport(answer)))
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, start_to_close_timeout=timedelta(seconds=start_to_close_s))
    await env.run(acts.book_car, reserve_req(Kind.CAR))
    assert seen and all(t == pytest.approx(expected_s) for t in seen[0].values())


# --- hold and confirm: holds, the pivot (ticket_flight) and the retriable finalize steps


def hold_req(kind: Kind, scenario: Scenario = Scenario.HAPPY, ttl: float = 600) -> ReserveRequest:
    return reserve_req(kind, scenario).model_copy(update={"hold_ttl_s": ttl})


def ticket_req(req: ReserveRequest) -> TicketRequest:
    return TicketRequest(booking_id=req.booking_id, idempotency_key=req.idempotency_key, scenario=req.scenario)


def finalize_req(req: ReserveRequest) -> FinalizeRequest:
    return FinalizeRequest(
        kind=req.kind, booking_id=req.booking_id, idempotency_key=req.idempotency_key, scenario=req.scenario
    )


async def test_held_trip_is_confirmed_and_ticketed(acts: BookingActivities, providers: ProviderService) -> None:
    env = ActivityEnvironment()
    car, hotel, flight = (hold_req(kind) for kind in (Kind.CAR, Kind.HOTEL, Kind.FLIGHT))
    hotel = hotel.model_copy(update={"booking_id": car.booking_id, "idempotency_key": f"{car.booking_id}:hotel"})
    flight = flight.model_copy(update={"booking_id": car.booking_id, "idempotency_key": f"{car.booking_id}:flight"})
    held = [
        await env.run(acts.book_car, car),
        await env.run(acts.book_hotel, hotel),
        await env.run(acts.book_flight, flight),
    ]
    assert all(r.held_until is not None and r.held_until > datetime.now(UTC) for r in held)
    assert {r["status"] for r in providers.reservations(car.booking_id)} == {"held"}

    tickets = [await env.run(acts.ticket_flight, ticket_req(flight)) for _ in range(2)]
    assert tickets[0].ticket_number == tickets[1].ticket_number  # a retried pivot never issues a second ticket
    assert tickets[0].confirmation == held[2].confirmation
    finals = [
        await env.run(acts.finalize_car, finalize_req(car)),
        await env.run(acts.finalize_hotel, finalize_req(hotel)),
    ]
    assert [f.confirmation for f in finals] == [held[0].confirmation, held[1].confirmation]
    rows = {r["kind"]: r for r in providers.reservations(car.booking_id)}
    assert {kind: row["status"] for kind, row in rows.items()} == {
        "car": "active",
        "hotel": "active",
        "flight": "active",
    }
    assert rows["flight"]["ticket_number"] == tickets[0].ticket_number


@pytest.mark.parametrize(
    ("scenario", "call", "error", "retryable"),
    [
        (Scenario.TICKETING_DOWN, "ticket_flight", ErrorType.TICKETING_REFUSED, False),
        (Scenario.FINALIZE_HOTEL_FLAKY, "finalize_hotel", ErrorType.PROVIDER_UNAVAILABLE, True),
        (Scenario.FINALIZE_HOTEL_BROKEN, "finalize_hotel", ErrorType.PROVIDER_UNAVAILABLE, True),
    ],
)
async def test_hold_scenarios_map_to_typed_errors(
    acts: BookingActivities,
    providers: ProviderService,
    scenario: Scenario,
    call: str,
    error: ErrorType,
    retryable: bool,
) -> None:
    env = ActivityEnvironment()
    kind = Kind.FLIGHT if call == "ticket_flight" else Kind.HOTEL
    req = hold_req(kind, scenario)
    await env.run(acts.book_flight if kind is Kind.FLIGHT else acts.book_hotel, req)
    with pytest.raises(ApplicationError) as info:
        if call == "ticket_flight":
            await env.run(acts.ticket_flight, ticket_req(req))
        else:
            await env.run(acts.finalize_hotel, finalize_req(req))
    assert info.value.type == error.value
    assert ends_a_step(info.value) is (not retryable)
    assert info.value.details[0]["attempt"] == 1
    assert [r["status"] for r in providers.reservations(req.booking_id)] == ["held"]


async def test_a_lapsed_hold_is_a_hold_expired_that_ends_a_step(
    acts: BookingActivities, providers: ProviderService
) -> None:
    env = ActivityEnvironment()
    car, flight = hold_req(Kind.CAR, ttl=0.3), hold_req(Kind.FLIGHT, ttl=0.3)
    await env.run(acts.book_car, car)
    await env.run(acts.book_flight, flight)
    await wait_until(
        lambda: {r["status"] for r in providers.reservations(car.booking_id)} == {"expired"}, what="the hold to lapse"
    )
    for run in (env.run(acts.finalize_car, finalize_req(car)), env.run(acts.ticket_flight, ticket_req(flight))):
        with pytest.raises(ApplicationError) as info:
            await run
        assert info.value.type == ErrorType.HOLD_EXPIRED.value and ends_a_step(info.value)
    undone = await env.run(acts.undo_book_car, cancel_req(car))
    assert undone.outcome == "expired"


@pytest.mark.parametrize(
    ("status", "content", "error"),
    [
        (409, b'{"error": "TicketingRefused", "message": "no"}', ErrorType.TICKETING_REFUSED),
        (409, b'{"error": "SoldOut", "message": "no"}', ErrorType.SOLD_OUT),
        (409, b'{"error": "SomethingNew", "message": "no"}', ErrorType.SOLD_OUT),
        (410, b'{"error": "HoldExpired", "message": "lapsed"}', ErrorType.HOLD_EXPIRED),
        (410, b'{"error": "ReservationVoided", "message": "gone"}', ErrorType.RESERVATION_VOIDED),
        (410, b"gone", ErrorType.RESERVATION_VOIDED),
        (422, b'{"error": "TicketingRefused"}', ErrorType.INVALID_BOOKING),  # a name is only trusted for its status
    ],
)
async def test_the_error_name_selects_among_the_types_of_its_status(
    status: int, content: bytes, error: ErrorType
) -> None:
    req = hold_req(Kind.FLIGHT)
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(_mock_acts(status, content).ticket_flight, ticket_req(req))
    assert info.value.type == error.value and ends_a_step(info.value)
    assert info.value.details[0]["http_status"] == status


async def test_a_provider_that_ignores_the_hold_is_a_protocol_error() -> None:
    # It booked outright and would not know the hold when the saga confirms it:
    # fail while the step can still be undone.
    acts = _mock_acts(201, b'{"reservation_id": "r1", "confirmation": "CAR-1", "status": "active"}')
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(acts.book_car, hold_req(Kind.CAR))
    assert info.value.type == ErrorType.PROVIDER_PROTOCOL.value and ends_a_step(info.value)
    assert "held_until" in info.value.message


async def test_finalize_refuses_a_request_of_another_kind(acts: BookingActivities) -> None:
    req = hold_req(Kind.CAR)
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(acts.finalize_hotel, finalize_req(req))
    assert info.value.type == ErrorType.INVALID_BOOKING.value and ends_a_step(info.value)


def test_the_worker_registers_the_hold_activities_by_their_contract_names(acts: BookingActivities) -> None:
    names = {_Definition.must_from_callable(fn).name for fn in acts.all()}
    assert {"ticket_flight", "finalize_car", "finalize_hotel"} <= names
    # Every activity of the step table, and nothing else: histories name them.
    assert names == ALL_ACTIVITIES


def test_only_the_pivot_asks_again_after_an_unreadable_answer() -> None:
    # A protocol error ends a booking (sending it again cannot help) but not the
    # pivot, whose ticket may exist behind an answer nobody could read.
    assert ErrorType.PROVIDER_PROTOCOL.value in STEP_NON_RETRYABLE_ERRORS
    assert ErrorType.PROVIDER_PROTOCOL.value not in NON_RETRYABLE_BUSINESS_ERRORS
