"""The provider service over real HTTP, with its real SQLite ledger."""

from __future__ import annotations

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
