"""The provider service over real HTTP, with its real SQLite ledger."""

from __future__ import annotations

import json
import random
import sqlite3
import string
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ProviderService, start_providers, stop_process, wait_until_blocking


def body(booking_id: str, kind: str = "car") -> dict[str, Any]:
    details = {
        "car": {"city": "Lisbon", "pickup": "2030-01-01", "dropoff": "2030-01-05"},
        "hotel": {"city": "Lisbon", "check_in": "2030-01-01", "check_out": "2030-01-05"},
        "flight": {"origin": "London", "destination": "Lisbon", "date": "2030-01-01"},
    }[kind]
    return {
        "booking_id": booking_id,
        "idempotency_key": f"{booking_id}:{kind}",
        "traveller": {"name": "Ada", "email": "ada@example.com"},
        "details": details,
    }


@pytest.fixture
def booking_id() -> str:
    return f"b-{uuid.uuid4().hex[:10]}"


def post(providers: ProviderService, path: str, json: Any, scenario: str = "happy") -> httpx.Response:
    return httpx.post(f"{providers.url}{path}", json=json, headers={"X-Scenario": scenario}, timeout=5)


def test_reserve_is_idempotent_per_key(providers: ProviderService, booking_id: str) -> None:
    first = post(providers, "/car/reservations", body(booking_id))
    again = post(providers, "/car/reservations", body(booking_id))
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["confirmation"] == again.json()["confirmation"]
    rows = providers.reservations(booking_id)
    assert [(r["kind"], r["status"]) for r in rows] == [("car", "active")]


def test_stats_count_the_requests_that_reached_each_key(providers: ProviderService, booking_id: str) -> None:
    car, hotel = body(booking_id), body(booking_id, "hotel")
    for _ in range(2):
        assert post(providers, "/car/reservations", car).status_code in (200, 201)
    assert post(providers, "/car/cancellations", car).status_code == 200
    assert post(providers, "/hotel/reservations", hotel).status_code == 201
    assert providers.attempts([car["idempotency_key"], hotel["idempotency_key"], f"{booking_id}:flight"]) == {
        car["idempotency_key"]: {"reserve": 2, "cancel": 1},
        hotel["idempotency_key"]: {"reserve": 1},
        f"{booking_id}:flight": {},
    }


def test_cancel_releases_then_is_a_no_op(providers: ProviderService, booking_id: str) -> None:
    post(providers, "/hotel/reservations", body(booking_id, "hotel"))
    key = f"{booking_id}:hotel"
    outcomes = [
        post(providers, f"/hotel/reservations/{key}/cancel", {"booking_id": booking_id}).json()["outcome"]
        for _ in range(2)
    ]
    assert outcomes == ["cancelled", "already_cancelled"]
    assert providers.active_kinds(booking_id) == []


def test_undo_before_booking_voids_the_key(providers: ProviderService, booking_id: str) -> None:
    # The undo overtook a booking still in flight: the late booking must not land.
    key = f"{booking_id}:flight"
    cancel = post(providers, f"/flight/reservations/{key}/cancel", {"booking_id": booking_id})
    assert cancel.json()["outcome"] == "not_booked"
    late = post(providers, "/flight/reservations", body(booking_id, "flight"))
    assert late.status_code == 410 and late.json()["error"] == "ReservationVoided"
    assert providers.reservations(booking_id) == []


def test_inventory_makes_sold_out_real(providers: ProviderService) -> None:
    city = "".join(random.choices(string.ascii_lowercase, k=10)).capitalize()  # a resource no other test uses
    capacity = {"resource": city, "day": "2030-01-01", "capacity": 1}
    assert httpx.put(f"{providers.url}/inventory/car", json=capacity, timeout=5).status_code == 200
    first, second = (f"b-{uuid.uuid4().hex[:8]}" for _ in range(2))
    requests = [body(b) for b in (first, second)]
    for req in requests:
        req["details"]["city"] = city
    answers = [post(providers, "/car/reservations", req) for req in requests]
    assert [a.status_code for a in answers] == [201, 409]
    assert answers[1].json()["error"] == "SoldOut" and city in answers[1].json()["message"]
    # Releasing the first frees the seat for the second.
    post(providers, f"/car/reservations/{first}:car/cancel", {"booking_id": first})
    assert post(providers, "/car/reservations", requests[1]).status_code == 201


def test_transient_failures_then_success(providers: ProviderService, booking_id: str) -> None:
    codes = [
        post(providers, "/flight/reservations", body(booking_id, "flight"), "flight-flaky").status_code
        for _ in range(4)
    ]
    assert codes == [503, 503, 503, 201]


def test_broken_cancel_keeps_the_reservation(providers: ProviderService, booking_id: str) -> None:
    post(providers, "/car/reservations", body(booking_id), "car-cancel-broken")
    key = f"{booking_id}:car"
    codes = {
        post(providers, f"/car/reservations/{key}/cancel", {"booking_id": booking_id}, "car-cancel-broken").status_code
        for _ in range(5)
    }
    assert codes == {503}
    assert providers.active_kinds(booking_id) == ["car"]


@pytest.mark.parametrize(
    ("path", "payload", "status", "error"),
    [
        ("/car/reservations", "not json", 400, "BadRequest"),
        ("/car/reservations", ["a", "list"], 400, "BadRequest"),
        ("/boat/reservations", {}, 404, "NotFound"),
        ("/car/reservations", {"booking_id": "b"}, 422, "InvalidBooking"),
        (
            "/car/reservations",
            {"booking_id": "b", "idempotency_key": "k", "traveller": {"name": "A"}, "details": {}},
            422,
            "InvalidBooking",
        ),
        ("/car/reservations/k/cancel", {}, 422, "InvalidBooking"),
    ],
)
def test_bad_requests_get_a_json_4xx_and_write_nothing(
    providers: ProviderService, path: str, payload: Any, status: int, error: str
) -> None:
    before = len(providers.reservations())
    if isinstance(payload, str):
        response = httpx.post(f"{providers.url}{path}", content=payload, timeout=5)
    else:
        response = post(providers, path, payload)
    assert response.status_code == status
    assert response.json()["error"] == error and response.json()["message"]
    assert len(providers.reservations()) == before


def test_unknown_scenario_is_a_400(providers: ProviderService, booking_id: str) -> None:
    response = post(providers, "/car/reservations", body(booking_id), "meteor")
    assert response.status_code == 400 and "meteor" in response.json()["message"]


def test_ledger_is_wal_and_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    service = start_providers(db)
    try:
        created = post(service, "/car/reservations", body("restart-1")).json()
    finally:
        stop_process(service.proc)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    service = start_providers(db)
    try:
        again = post(service, "/car/reservations", body("restart-1"))
        assert again.status_code == 200 and again.json()["confirmation"] == created["confirmation"]
    finally:
        stop_process(service.proc)


def test_reused_key_with_different_content_is_refused(providers: ProviderService, booking_id: str) -> None:
    # A key reused (e.g. after retention) must not return last week's booking.
    first = post(providers, "/hotel/reservations", body(booking_id, "hotel"))
    changed = body(booking_id, "hotel")
    changed["details"]["check_out"] = "2030-01-09"
    again = post(providers, "/hotel/reservations", changed)
    assert first.status_code == 201
    assert again.status_code == 422 and again.json()["error"] == "InvalidBooking"
    assert "different" in again.json()["message"]
    rows = providers.reservations(booking_id)
    assert [r["details"]["check_out"] for r in rows] == ["2030-01-05"]


@pytest.mark.parametrize("kind", ["car", "hotel", "flight"])
def test_cancel_refuses_a_key_of_another_booking(providers: ProviderService, booking_id: str, kind: str) -> None:
    # An undo must never void or cancel a key that is not its own booking's.
    post(providers, f"/{kind}/reservations", body(booking_id, kind))
    other = f"b-{uuid.uuid4().hex[:10]}"
    for key in (f"{booking_id}:{kind}", f"{other}:{kind}"):  # booked under another id; never booked
        answer = post(providers, f"/{kind}/cancellations", {"booking_id": "intruder", "idempotency_key": key})
        assert answer.status_code == 422 and answer.json()["error"] == "InvalidBooking", answer.text
    assert providers.active_kinds(booking_id) == [kind]
    late = post(providers, f"/{kind}/reservations", body(other, kind))
    assert late.status_code == 201  # the refused undo did not void the other booking's key


def test_cancel_by_body_handles_keys_that_are_not_path_safe(providers: ProviderService) -> None:
    booking_id = f"x%41y.{uuid.uuid4().hex[:6]}"
    assert post(providers, "/car/reservations", body(booking_id)).status_code == 201
    answer = post(providers, "/car/cancellations", {"booking_id": booking_id, "idempotency_key": f"{booking_id}:car"})
    assert answer.json()["outcome"] == "cancelled"
    assert providers.active_kinds(booking_id) == []


def test_legacy_cancel_path_refuses_a_decoded_key_instead_of_voiding_it(providers: ProviderService) -> None:
    # The old route decodes %41 to "A": the decoded key is not this booking's, so it
    # must be refused rather than answered "not_booked" while the car stays held.
    booking_id = f"x%41y.{uuid.uuid4().hex[:6]}"
    post(providers, "/car/reservations", body(booking_id))
    answer = post(providers, f"/car/reservations/{booking_id}:car/cancel", {"booking_id": booking_id})
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize(
    ("kind", "details", "second_details"),
    [
        (
            "hotel",
            {"city": "C", "check_in": "2030-02-01", "check_out": "2030-02-04"},
            {"city": "C", "check_in": "2030-02-02", "check_out": "2030-02-03"},
        ),
        (
            "car",
            {"city": "C", "pickup": "2030-02-01", "dropoff": "2030-02-04"},
            {"city": "C", "pickup": "2030-02-02", "dropoff": "2030-02-02"},
        ),
    ],
)
def test_inventory_counts_every_day_a_reservation_covers(
    providers: ProviderService, kind: str, details: dict[str, str], second_details: dict[str, str]
) -> None:
    # Capacity counts every night a stay covers, not only its first: capacity 1 on night 2
    # must refuse a second guest whose stay overlaps it.
    city = "".join(random.choices(string.ascii_lowercase, k=10)).capitalize()
    capacity = {"resource": city, "day": "2030-02-02", "capacity": 1}
    assert httpx.put(f"{providers.url}/inventory/{kind}", json=capacity, timeout=5).status_code == 200
    first, second = body(f"b-{uuid.uuid4().hex[:8]}", kind), body(f"b-{uuid.uuid4().hex[:8]}", kind)
    first["details"] = {**details, "city": city}
    second["details"] = {**second_details, "city": city}
    answers = [post(providers, f"/{kind}/reservations", req) for req in (first, second)]
    assert [a.status_code for a in answers] == [201, 409]


def test_hotel_check_out_night_is_not_counted(providers: ProviderService) -> None:
    city = "".join(random.choices(string.ascii_lowercase, k=10)).capitalize()
    capacity = {"resource": city, "day": "2030-02-04", "capacity": 1}
    assert httpx.put(f"{providers.url}/inventory/hotel", json=capacity, timeout=5).status_code == 200
    stays = [("2030-02-01", "2030-02-04"), ("2030-02-04", "2030-02-05")]
    answers = []
    for check_in, check_out in stays:
        req = body(f"b-{uuid.uuid4().hex[:8]}", "hotel")
        req["details"] = {"city": city, "check_in": check_in, "check_out": check_out}
        answers.append(post(providers, "/hotel/reservations", req).status_code)
    assert answers == [201, 201]


def test_provider_error_statuses_come_from_the_one_table() -> None:
    # Every error the provider answers with must come back, through the same
    # table, as exactly that type: 409 is SoldOut *or* TicketingRefused.
    from providers.handling import ERROR_STATUS
    from trip.errors import HTTP_STATUS_ERRORS, error_for_status

    for status, errors in HTTP_STATUS_ERRORS.items():
        for error in errors:
            assert ERROR_STATUS[error.value] == status
            assert error_for_status(status, error.value) == error
    assert ERROR_STATUS["TicketingRefused"] == 409 and ERROR_STATUS["HoldExpired"] == 410


OLD_SCHEMA = """
CREATE TABLE reservations (
    idempotency_key TEXT PRIMARY KEY, reservation_id TEXT NOT NULL UNIQUE, confirmation TEXT NOT NULL,
    kind TEXT NOT NULL, booking_id TEXT NOT NULL, resource TEXT NOT NULL, day TEXT NOT NULL,
    traveller TEXT NOT NULL, details TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,
    cancelled_at TEXT
);
"""


def test_a_ledger_file_from_the_previous_release_is_migrated_in_place(tmp_path: Path) -> None:
    # `make run` keeps its ledger file: the new columns must be added, and old rows
    # backfilled, without losing what is booked.
    from providers.ledger import Ledger, LedgerConflict

    db = tmp_path / "old.sqlite"
    traveller = {"email": "ada@example.com", "name": "Ada"}
    details = {"check_in": "2030-03-01", "check_out": "2030-03-04", "city": "Porto"}
    with sqlite3.connect(db) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO reservations VALUES ('old:hotel', 'r1', 'HTL-OLD', 'hotel', 'old', 'Porto', '2030-03-01',"
            " ?, ?, 'active', '2030-01-01T00:00:00', NULL)",
            (json.dumps(traveller, sort_keys=True), json.dumps(details, sort_keys=True)),
        )
    for _ in range(2):  # opening twice must not fail on the columns it already added
        ledger = Ledger(db, default_capacity=1)
        same = ledger.reserve(
            kind="hotel", key="old:hotel", booking_id="old", resource="Porto", traveller=traveller, details=details
        )
        assert not same.created and same.row["confirmation"] == "HTL-OLD"
        with pytest.raises(LedgerConflict) as info:
            ledger.reserve(
                kind="hotel",
                key="old:hotel",
                booking_id="old",
                resource="Porto",
                traveller=traveller,
                details={**details, "check_out": "2030-03-05"},
            )
        assert info.value.error == "InvalidBooking"
        # The old row now holds every night it covers: night 3 is full at capacity 1.
        with pytest.raises(LedgerConflict, match="2030-03-03"):
            ledger.reserve(
                kind="hotel",
                key="new:hotel",
                booking_id="new",
                resource="Porto",
                traveller=traveller,
                details={**details, "check_in": "2030-03-03"},
            )
        ledger.close()


# --- holds: placed with a TTL, confirmed or ticketed, or lapsing on their own


def hold(
    providers: ProviderService, booking_id: str, kind: str = "car", ttl: float = 600, scenario: str = "happy"
) -> httpx.Response:
    return post(providers, f"/{kind}/reservations", {**body(booking_id, kind), "hold_ttl_s": ttl}, scenario)


def keyed(booking_id: str, kind: str) -> dict[str, str]:
    return {"booking_id": booking_id, "idempotency_key": f"{booking_id}:{kind}"}


def status_of(providers: ProviderService, booking_id: str, kind: str) -> str:
    (row,) = [r for r in providers.reservations(booking_id) if r["kind"] == kind]
    return str(row["status"])


def wait_for_status(providers: ProviderService, booking_id: str, kind: str, wanted: str, timeout: float = 10) -> None:
    """Poll the ledger (another process's state) until ``kind`` reads ``wanted``."""
    wait_until_blocking(
        lambda: status_of(providers, booking_id, kind),
        lambda seen: seen == wanted,
        what=f"{kind} of {booking_id} to be {wanted!r}",
        timeout=timeout,
    )


def test_a_hold_lapses_at_its_ttl_and_a_retry_neither_moves_nor_extends_it(
    providers: ProviderService, booking_id: str
) -> None:
    before = datetime.now(UTC)
    first = hold(providers, booking_id, ttl=600)
    again = hold(providers, booking_id, ttl=3600)  # a retry's TTL does not change the first promise
    assert (first.status_code, again.status_code) == (201, 200)
    held_until = datetime.fromisoformat(first.json()["held_until"])
    assert held_until.utcoffset() == timedelta(0)
    assert before + timedelta(seconds=599) <= held_until <= datetime.now(UTC) + timedelta(seconds=601)
    assert again.json()["held_until"] == first.json()["held_until"]
    assert again.json()["confirmation"] == first.json()["confirmation"]
    assert status_of(providers, booking_id, "car") == "held"


@pytest.mark.parametrize("kind", ["car", "hotel"])
def test_confirming_a_hold_books_it_and_a_retry_answers_the_same(
    providers: ProviderService, booking_id: str, kind: str
) -> None:
    held = hold(providers, booking_id, kind).json()
    answers = [post(providers, f"/{kind}/confirmations", keyed(booking_id, kind)) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["outcome"] for a in answers] == ["confirmed", "already_confirmed"]
    assert {a.json()["confirmation"] for a in answers} == {held["confirmation"]}
    assert status_of(providers, booking_id, kind) == "active"


def test_ticketing_issues_one_ticket_and_shows_it_in_the_ledger(providers: ProviderService, booking_id: str) -> None:
    hold(providers, booking_id, "flight")
    answers = [post(providers, "/flight/tickets", keyed(booking_id, "flight")) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    numbers = {a.json()["ticket_number"] for a in answers}
    assert len(numbers) == 1 and numbers.pop().startswith("TKT-")
    assert [a.json()["outcome"] for a in answers] == ["ticketed", "already_ticketed", "already_ticketed"]
    (row,) = providers.reservations(booking_id)
    assert (row["status"], row["ticket_number"]) == ("active", answers[0].json()["ticket_number"])


def test_an_issued_ticket_cannot_be_cancelled(providers: ProviderService, booking_id: str) -> None:
    hold(providers, booking_id, "flight")
    ticket = post(providers, "/flight/tickets", keyed(booking_id, "flight")).json()["ticket_number"]
    refused = post(providers, "/flight/cancellations", keyed(booking_id, "flight"))
    assert refused.status_code == 422 and refused.json()["error"] == "InvalidBooking"
    assert ticket in refused.json()["message"]
    assert providers.active_kinds(booking_id) == ["flight"]


def test_cancelling_a_hold_releases_it_and_it_can_no_longer_be_confirmed(
    providers: ProviderService, booking_id: str
) -> None:
    for kind in ("car", "flight"):
        hold(providers, booking_id, kind)
        cancel = post(providers, f"/{kind}/cancellations", keyed(booking_id, kind))
        assert cancel.json()["outcome"] == "cancelled"
    late = [
        post(providers, "/car/confirmations", keyed(booking_id, "car")),
        post(providers, "/flight/tickets", keyed(booking_id, "flight")),
    ]
    assert [(a.status_code, a.json()["error"]) for a in late] == [(410, "ReservationVoided")] * 2
    assert sorted(r["status"] for r in providers.reservations(booking_id)) == ["cancelled", "cancelled"]


def test_a_hold_nobody_confirms_expires_on_its_own(providers: ProviderService, booking_id: str) -> None:
    for kind in ("car", "flight"):
        assert hold(providers, booking_id, kind, ttl=0.3).status_code == 201
    # The flight was held after the car, so on a busy machine it may lapse a moment later.
    for kind in ("car", "flight"):
        wait_for_status(providers, booking_id, kind, "expired")
    late = [
        post(providers, "/car/confirmations", keyed(booking_id, "car")),
        post(providers, "/flight/tickets", keyed(booking_id, "flight")),
        hold(providers, booking_id, "car", ttl=600),  # a late retry of the hold does not revive it
    ]
    assert [(a.status_code, a.json()["error"]) for a in late] == [(410, "HoldExpired")] * 3
    # The saga's undo of a lapsed hold has nothing left to release, and succeeds.
    undo = post(providers, "/car/cancellations", keyed(booking_id, "car"))
    assert undo.status_code == 200 and undo.json()["outcome"] == "expired"
    assert status_of(providers, booking_id, "car") == "expired"
    counts = httpx.get(f"{providers.url}/stats", timeout=5).json()["reservations"]
    assert counts["expired"] >= 2


def test_a_hold_takes_inventory_until_it_lapses(providers: ProviderService) -> None:
    city = "".join(random.choices(string.ascii_lowercase, k=10)).capitalize()
    capacity = {"resource": f"London->{city}", "day": "2030-01-01", "capacity": 1}
    assert httpx.put(f"{providers.url}/inventory/flight", json=capacity, timeout=5).status_code == 200
    first, second = (body(f"b-{uuid.uuid4().hex[:8]}", "flight") for _ in range(2))
    for req in (first, second):
        req["details"]["destination"] = city
    assert post(providers, "/flight/reservations", {**first, "hold_ttl_s": 2}).status_code == 201
    # While held, the seat is taken (2 s is ample for one request, even on a busy machine).
    assert post(providers, "/flight/reservations", second).status_code == 409
    wait_for_status(providers, first["booking_id"], "flight", "expired")
    assert post(providers, "/flight/reservations", second).status_code == 201


def test_finalize_flaky_recovers_and_broken_never_does(providers: ProviderService, booking_id: str) -> None:
    hold(providers, booking_id, "hotel", scenario="finalize-hotel-flaky")
    codes = [
        post(providers, "/hotel/confirmations", keyed(booking_id, "hotel"), "finalize-hotel-flaky").status_code
        for _ in range(3)
    ]
    assert codes == [503, 503, 200]
    assert status_of(providers, booking_id, "hotel") == "active"

    broken = f"b-{uuid.uuid4().hex[:10]}"
    hold(providers, broken, "hotel", scenario="finalize-hotel-broken")
    codes = [
        post(providers, "/hotel/confirmations", keyed(broken, "hotel"), "finalize-hotel-broken").status_code
        for _ in range(5)
    ]
    assert codes == [503] * 5
    assert status_of(providers, broken, "hotel") == "held"


def test_ticketing_down_refuses_and_leaves_the_hold_to_be_released(providers: ProviderService, booking_id: str) -> None:
    assert hold(providers, booking_id, "flight", scenario="ticketing-down").status_code == 201
    refused = post(providers, "/flight/tickets", keyed(booking_id, "flight"), "ticketing-down")
    assert refused.status_code == 409 and refused.json()["error"] == "TicketingRefused"
    (row,) = providers.reservations(booking_id)
    assert (row["status"], row["ticket_number"]) == ("held", None)
    undo = post(providers, "/flight/cancellations", keyed(booking_id, "flight"), "ticketing-down")
    assert undo.json()["outcome"] == "cancelled"


@pytest.mark.parametrize(
    ("path", "owner", "status", "error"),
    [
        ("/car/confirmations", "never-booked", 422, "InvalidBooking"),
        ("/flight/tickets", "never-booked", 422, "InvalidBooking"),
        ("/car/confirmations", "intruder", 422, "InvalidBooking"),
        ("/flight/tickets", "intruder", 422, "InvalidBooking"),
        ("/flight/confirmations", "owner", 404, "NotFound"),
    ],
)
def test_confirm_and_ticket_refuse_keys_that_are_not_held_by_that_booking(
    providers: ProviderService, booking_id: str, path: str, owner: str, status: int, error: str
) -> None:
    kind = path.split("/")[1]
    hold(providers, booking_id, kind)
    payload = keyed(booking_id, kind)
    if owner == "never-booked":
        payload = keyed(f"b-{uuid.uuid4().hex[:10]}", kind)
    elif owner == "intruder":
        payload["booking_id"] = "intruder"
    answer = post(providers, path, payload)
    assert (answer.status_code, answer.json()["error"]) == (status, error), answer.text
    assert status_of(providers, booking_id, kind) == "held"


def test_a_voided_key_cannot_be_ticketed(providers: ProviderService, booking_id: str) -> None:
    # The undo overtook the hold: there is nothing to ticket, and never will be.
    post(providers, "/flight/cancellations", keyed(booking_id, "flight"))
    answer = post(providers, "/flight/tickets", keyed(booking_id, "flight"))
    assert (answer.status_code, answer.json()["error"]) == (410, "ReservationVoided")


@pytest.mark.parametrize("ttl", [0, -5, "600", True, 8 * 24 * 3600])
def test_a_bad_hold_ttl_is_refused_and_nothing_is_held(providers: ProviderService, booking_id: str, ttl: Any) -> None:
    answer = hold(providers, booking_id, ttl=ttl)
    assert (answer.status_code, answer.json()["error"]) == (422, "InvalidBooking")
    assert "hold_ttl_s" in answer.json()["message"]
    assert providers.reservations(booking_id) == []


#: The reservations table as the release before holds created it: its CHECK
#: constraint refuses the statuses ``held`` and ``expired``.
PREVIOUS_SCHEMA = """
CREATE TABLE reservations (
    idempotency_key TEXT PRIMARY KEY,
    reservation_id  TEXT NOT NULL UNIQUE,
    confirmation    TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('car', 'hotel', 'flight')),
    booking_id      TEXT NOT NULL,
    resource        TEXT NOT NULL,
    day             TEXT NOT NULL,
    last_day        TEXT,
    traveller       TEXT NOT NULL,
    details         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'cancelled')),
    created_at      TEXT NOT NULL,
    cancelled_at    TEXT,
    request_hash    TEXT
);
CREATE INDEX reservations_booking ON reservations (booking_id);
CREATE INDEX reservations_inventory ON reservations (kind, resource, day, status);
"""


def test_a_ledger_from_before_holds_is_migrated_and_takes_holds(tmp_path: Path) -> None:
    # `make run` keeps its ledger file, whose CHECK constraint predates holds.
    from providers.ledger import Ledger, request_hash

    db = tmp_path / "previous.sqlite"
    traveller = {"email": "ada@example.com", "name": "Ada"}
    details = {"city": "Porto", "dropoff": "2030-03-04", "pickup": "2030-03-01"}
    fingerprint = request_hash(kind="car", booking_id="old", traveller=traveller, details=details)
    with sqlite3.connect(db) as conn:
        conn.executescript(PREVIOUS_SCHEMA)
        conn.execute(
            "INSERT INTO reservations VALUES ('old:car', 'r1', 'CAR-OLD', 'car', 'old', 'Porto', '2030-03-01',"
            " '2030-03-04', ?, ?, 'active', '2030-01-01T00:00:00.000+00:00', NULL, ?)",
            (json.dumps(traveller, sort_keys=True), json.dumps(details, sort_keys=True), fingerprint),
        )
    for round_ in range(2):  # opening again must neither fail nor lose anything
        ledger = Ledger(db, default_capacity=10)
        held = ledger.reserve(
            kind="car",
            key=f"new{round_}:car",
            booking_id=f"new{round_}",
            resource="Porto",
            traveller=traveller,
            details=details,
            hold_ttl_s=600,
        )
        assert held.created and held.row["status"] == "held" and held.row["held_until"]
        same = ledger.reserve(
            kind="car", key="old:car", booking_id="old", resource="Porto", traveller=traveller, details=details
        )
        assert not same.created and (same.row["confirmation"], same.row["status"]) == ("CAR-OLD", "active")
        ledger.close()
    ledger = Ledger(db, default_capacity=10)
    assert ledger.cancel(kind="car", key="old:car", booking_id="old") == "cancelled"
    ledger.close()
    with sqlite3.connect(db) as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"reservations_booking", "reservations_inventory", "reservations_holds"} <= indexes


def test_a_refused_request_does_not_use_up_a_bookings_injected_faults(
    providers: ProviderService, booking_id: str
) -> None:
    # Found by tests/system/test_fuzz_providers.py: a refused request counted as an
    # attempt, so someone else's forged call took a real booking's 503s.
    key = f"{booking_id}:car"
    post(providers, "/car/reservations", body(booking_id), "car-cancel-flaky")
    forged = {"booking_id": "someone-else", "idempotency_key": key}
    assert post(providers, "/car/cancellations", forged).status_code == 422
    mine = {"booking_id": booking_id, "idempotency_key": key}
    codes = [post(providers, "/car/cancellations", mine, "car-cancel-flaky").status_code for _ in range(3)]
    assert codes == [503, 503, 200]


# --- found by fuzzing the service from outside --------------------------------


@pytest.mark.parametrize("path", ["/car/reservations", "/car/cancellations", "/inventory/car", "/admin/outages/lift"])
def test_a_body_in_an_unknown_charset_is_a_json_4xx(providers: ProviderService, path: str) -> None:
    method = "PUT" if path.startswith("/inventory") else "POST"
    answer = httpx.request(
        method,
        f"{providers.url}{path}",
        content=json.dumps(body("charset")).encode(),
        headers={"Content-Type": "application/json; charset=bogus"},
        timeout=5,
    )
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"] == "UnsupportedMediaType" and "charset" in answer.json()["message"]
    assert providers.reservations("charset") == []


def test_deeply_nested_json_is_a_json_400(providers: ProviderService, booking_id: str) -> None:
    nested = json.dumps(body(booking_id))[:-1] + ', "extra": ' + "[" * 5000 + "]" * 5000 + "}"
    answer = httpx.post(
        f"{providers.url}/car/reservations", content=nested, headers={"Content-Type": "application/json"}, timeout=5
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "BadRequest"), answer.text
    assert "nests deeper" in answer.json()["message"]
    assert providers.reservations(booking_id) == []


def test_the_last_day_of_the_calendar_is_booked_and_its_capacity_counts(providers: ProviderService) -> None:
    # The ledger walked one day past the last day to check capacity: 9999-12-31 was a 500.
    city = "End" + "".join(random.choices(string.ascii_lowercase, k=8))
    for kind, details in [
        ("car", {"city": city, "pickup": "9999-12-30", "dropoff": "9999-12-31"}),
        ("hotel", {"city": city, "check_in": "9999-12-30", "check_out": "9999-12-31"}),
        ("flight", {"origin": city, "destination": "Lisbon", "date": "9999-12-31"}),
    ]:
        booking_id = f"b-{uuid.uuid4().hex[:10]}"
        answer = post(providers, f"/{kind}/reservations", {**body(booking_id, kind), "details": details})
        assert answer.status_code == 201, answer.text
    assert httpx.put(
        f"{providers.url}/inventory/car", json={"resource": city, "day": "9999-12-31", "capacity": 1}
    ).is_success
    again = {"city": city, "pickup": "9999-12-31", "dropoff": "9999-12-31"}
    full = post(providers, "/car/reservations", {**body("late", "car"), "details": again})
    assert (full.status_code, full.json()["error"]) == (409, "SoldOut"), full.text


@pytest.mark.parametrize(
    "capacity, day",
    [(2**63, "2030-01-01"), (2**64 + 5, "2030-01-01"), (-1, "2030-01-01"), (1.5, "2030-01-01")]
    + [(0, day) for day in ["2027-1-4", "NaN", "x" * 30_000, "2030-02-30", "", 20270104]],
)
def test_an_impossible_capacity_or_day_is_refused_and_stores_nothing(
    providers: ProviderService, capacity: Any, day: Any
) -> None:
    resource = f"Nowhere{uuid.uuid4().hex[:6]}"
    answer = httpx.put(
        f"{providers.url}/inventory/car", json={"resource": resource, "day": day, "capacity": capacity}, timeout=5
    )
    assert (answer.status_code, answer.json()["error"]) == (422, "InvalidBooking"), answer.text
    with sqlite3.connect(f"file:{providers.db}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT COUNT(*) FROM inventory WHERE resource = ?", (resource,)).fetchone() == (0,)


def test_capacity_set_for_a_day_spelled_another_way_blocks_that_day(providers: ProviderService) -> None:
    city = "Basic" + "".join(random.choices(string.ascii_lowercase, k=8))
    answer = httpx.put(f"{providers.url}/inventory/car", json={"resource": city, "day": "20300104", "capacity": 0})
    assert answer.json()["day"] == "2030-01-04"
    details = {"city": city, "pickup": "2030-01-03", "dropoff": "2030-01-05"}
    booked = post(providers, "/car/reservations", {**body(f"b-{uuid.uuid4().hex[:10]}"), "details": details})
    assert (booked.status_code, booked.json()["error"]) == (409, "SoldOut"), booked.text
    assert "2030-01-04" in booked.json()["message"]


@pytest.mark.parametrize(
    "kind, path, scenario, op, real_codes",
    [
        ("car", "/car/cancellations", "car-cancel-flaky", "cancel", [503, 503, 200]),
        ("car", "/car/cancellations", "car-cancel-outage", "cancel", [503, 503]),
        ("flight", "/flight/reservations", "flight-flaky", None, None),
        ("hotel", "/hotel/confirmations", "finalize-hotel-flaky", "finalize", [503, 503, 200]),
    ],
)
def test_a_forged_key_is_refused_before_any_injected_fault_and_counts_nothing(
    providers: ProviderService, booking_id: str, kind: str, path: str, scenario: str, op: str | None, real_codes: Any
) -> None:
    # Two forged calls from booking EVIL for this booking's key used up its two injected 503s.
    key = f"{booking_id}:{kind}"
    assert hold(providers, booking_id, kind).status_code == 201
    forged = (
        {**body("EVIL", kind), "idempotency_key": key} if op is None else {"booking_id": "EVIL", "idempotency_key": key}
    )
    for _ in range(2):
        answer = post(providers, path, forged, scenario)
        assert (answer.status_code, answer.json()["error"]) == (422, "InvalidBooking"), answer.text
    assert providers.attempts([key])[key] == {"reserve": 1}
    if real_codes is not None:
        mine = {"booking_id": booking_id, "idempotency_key": key}
        assert [post(providers, path, mine, scenario).status_code for _ in real_codes] == real_codes


def test_a_forged_ticket_is_refused_before_the_airline_answers(providers: ProviderService, booking_id: str) -> None:
    hold(providers, booking_id, "flight")
    forged = {"booking_id": "EVIL", "idempotency_key": f"{booking_id}:flight"}
    answer = post(providers, "/flight/tickets", forged, "ticketing-down")
    assert (answer.status_code, answer.json()["error"]) == (422, "InvalidBooking"), answer.text


def test_a_flight_booked_outright_cannot_be_ticketed(providers: ProviderService, booking_id: str) -> None:
    assert post(providers, "/flight/reservations", body(booking_id, "flight")).status_code == 201
    answer = post(providers, "/flight/tickets", keyed(booking_id, "flight"))
    assert (answer.status_code, answer.json()["error"]) == (422, "InvalidBooking"), answer.text
    assert "booked outright" in answer.json()["message"]
    # So its undo still works.
    cancelled = post(providers, "/flight/cancellations", keyed(booking_id, "flight"))
    assert cancelled.json()["outcome"] == "cancelled"
