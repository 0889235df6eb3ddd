"""The provider service over real HTTP, with its real SQLite ledger."""

from __future__ import annotations

import json
import random
import sqlite3
import string
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ProviderService, start_providers, stop_process


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
    # Issue 11 item 2: a key reused (e.g. after retention) must not return last week's booking.
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
    # Issue 11 item 1: an undo must never void or cancel a key that is not its own booking's.
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
    # Issue 11 item 11: capacity 1 on night 2 must refuse a second guest that overlaps it.
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
    from providers.app import _ERROR_STATUS
    from trip.errors import HTTP_STATUS_ERRORS

    assert _ERROR_STATUS == {error.value: status for status, (error, _) in HTTP_STATUS_ERRORS.items()}


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
