"""Fuzz the provider API: whatever arrives, no 5xx, JSON 4xx, and a refusal changes nothing.

Generated JSON bodies (wrong types, odd and huge unicode, lone surrogates,
missing and unknown keys, valid bodies with one part broken, deep nesting,
days at the calendar's edges, capacities SQLite cannot store), charsets nobody
knows, the fault scenarios with keys of another booking, wrong methods and
made-up paths on every route. The ledger is a real SQLite file under a real
provider process; "changes nothing" compares a dump of every table, except
that an injected 503 counts one attempt on a key of the request's own booking.
A flight booked outright (the seed's) must never be ticketed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.conftest import ProviderService, start_providers, stop_process
from tests.fuzzing import content_type, deep_json, edge_days, huge_ints

START = date.today() + timedelta(days=30)
TRAVELLER = {"name": "Ada Lovelace", "email": "ada@example.com"}
DETAILS: dict[str, dict[str, Any]] = {
    "car": {"city": "Lisbon", "pickup": START.isoformat(), "dropoff": (START + timedelta(days=3)).isoformat()},
    "hotel": {"city": "Lisbon", "check_in": START.isoformat(), "check_out": (START + timedelta(days=3)).isoformat()},
    "flight": {"origin": "London", "destination": "Lisbon", "date": START.isoformat()},
}
KINDS = list(DETAILS)
RESERVE = {
    k: {"booking_id": "edge", "idempotency_key": f"edge:{k}", "traveller": TRAVELLER, "details": DETAILS[k]}
    for k in DETAILS
}
SEED = "seed-1"
HELD = "seed-3"
#: The scenarios that inject a fault into some route: with a key of another
#: booking, they must refuse before the fault (and count nothing).
FAULTS = ["car-cancel-flaky", "car-cancel-outage", "car-cancel-broken", "flight-flaky", "hotel-down"]
FAULTS += ["finalize-hotel-flaky", "finalize-hotel-broken", "ticketing-down"]


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: the ledger's whole state."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}


def owner(state: dict[str, list[tuple[Any, ...]]], key: str) -> tuple[str, str] | None:
    """(kind, booking id) a key was booked or voided under, if any."""
    for row in state["reservations"]:
        if row[0] == key:
            return row[3], row[4]
    for row in state["voided_keys"]:
        if row[0] == key:
            return row[1], row[2]
    return None


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderService]:
    service = start_providers(tmp_path_factory.mktemp("fuzz-providers") / "ledger.db")
    try:
        # Something to collide with: three bookings, one cancelled, a voided key and a full day.
        for kind in KINDS:
            body = {"booking_id": SEED, "idempotency_key": f"{SEED}:{kind}", "traveller": TRAVELLER}
            httpx.post(f"{service.url}/{kind}/reservations", json={**body, "details": DETAILS[kind]}).raise_for_status()
        httpx.post(f"{service.url}/car/cancellations", json={"booking_id": SEED, "idempotency_key": f"{SEED}:car"})
        httpx.post(
            f"{service.url}/hotel/cancellations", json={"booking_id": "seed-2", "idempotency_key": "seed-2:hotel"}
        )
        httpx.put(
            f"{service.url}/inventory/flight", json={"resource": "Paris->Rome", "day": START.isoformat(), "capacity": 0}
        ).raise_for_status()
        # Holds (a day long) to confirm, ticket and forge keys of.
        for kind in KINDS:
            body = {
                "booking_id": HELD,
                "idempotency_key": f"{HELD}:{kind}",
                "traveller": TRAVELLER,
                "hold_ttl_s": 86400,
            }
            httpx.post(f"{service.url}/{kind}/reservations", json={**body, "details": DETAILS[kind]}).raise_for_status()
        yield service
    finally:
        stop_process(service.proc)


# --- strategies ---------------------------------------------------------------

ODD_CHARS = st.characters(codec=None, categories=None)  # every code point, control characters included
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
odd_text = st.text(st.one_of(ODD_CHARS, SURROGATES), max_size=40)
huge_text = st.builds(
    lambda ch, n: ch * n, st.sampled_from(["x", "é", "\U0001f600", "\u202e", "\x00"]), st.integers(100, 70_000)
)
keys = st.one_of(
    st.sampled_from([f"{b}:{k}" for b in (SEED, HELD) for k in KINDS] + [SEED, "seed-2:hotel", "x"]), odd_text
)
booking_ids = st.one_of(st.sampled_from([SEED, HELD, "seed-2", "EVIL"]), odd_text)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), odd_text, st.sampled_from(["car", "Lisbon", SEED])
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4), max_leaves=12
)
anything = st.one_of(json_values, huge_text, keys, edge_days, huge_ints)


@st.composite
def reserve_bodies(draw: st.DrawFn, kind: str) -> Any:
    """A valid booking with one part replaced, removed or added; or any JSON at all."""
    body: dict[str, Any] = {
        "booking_id": draw(st.sampled_from([SEED, HELD, "seed-2", "fresh", "EVIL"])),
        "idempotency_key": draw(keys),
        "traveller": dict(TRAVELLER),
        "details": dict(DETAILS[kind]),
    }
    how = draw(st.sampled_from(["replace", "replace-nested", "remove", "add", "whole", "edge-days"]))
    if how == "whole":
        return draw(anything)
    if how == "edge-days":
        for field in body["details"]:
            if field not in ("city", "origin", "destination"):
                body["details"][field] = draw(edge_days)
        return body
    if how == "replace":
        body[draw(st.sampled_from(sorted(body)))] = draw(anything)
    elif how == "replace-nested":
        part = draw(st.sampled_from(["traveller", "details"]))
        body[part][draw(st.sampled_from(sorted(body[part])))] = draw(anything)
    elif how == "remove":
        del body[draw(st.sampled_from(sorted(body)))]
    else:
        body[draw(odd_text)] = draw(anything)
    return body


@st.composite
def forged(draw: st.DrawFn) -> tuple[str, str, Any, dict[str, Any]]:
    """A call with a key of another booking, under a scenario that injects a fault into that route."""
    kind = draw(st.sampled_from(KINDS))
    booking = draw(reserve_bodies(kind))
    key, booking_id = f"{draw(st.sampled_from([HELD, SEED]))}:{kind}", draw(st.sampled_from(["EVIL", "seed-2"]))
    path, body = draw(
        st.sampled_from(
            [
                (f"/{kind}/reservations", {**(booking if isinstance(booking, dict) else {}), "booking_id": booking_id}),
                (f"/{kind}/cancellations", {"booking_id": booking_id}),
                (f"/{kind}/reservations/{quote(key, safe='')}/cancel", {"booking_id": booking_id}),
                (f"/{kind}/confirmations", {"booking_id": booking_id}),
                ("/flight/tickets", {"booking_id": booking_id}),
            ]
        )
    )
    body = {**body, "idempotency_key": key}
    return "POST", path, body, {"X-Scenario": draw(st.sampled_from(FAULTS))}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, Any, dict[str, Any]]:
    """(method, path, JSON body or raw bytes, headers) aimed at a route, or near one."""
    if draw(st.integers(0, 5)) == 0:
        return draw(forged())
    kind = draw(st.one_of(st.sampled_from(KINDS), odd_text.filter(lambda s: s not in ("", ".", "..")).map(segment)))
    real_kind = kind if kind in KINDS else "car"
    routes: list[tuple[str, str, st.SearchStrategy[Any]]] = [
        ("POST", f"/{kind}/reservations", reserve_bodies(real_kind)),
        ("POST", f"/{kind}/cancellations", st.fixed_dictionaries({"booking_id": booking_ids, "idempotency_key": keys})),
        ("POST", f"/{kind}/reservations/{{key}}/cancel", st.fixed_dictionaries({"booking_id": booking_ids})),
        ("POST", f"/{kind}/confirmations", st.fixed_dictionaries({"booking_id": booking_ids, "idempotency_key": keys})),
        ("POST", "/flight/tickets", st.fixed_dictionaries({"booking_id": booking_ids, "idempotency_key": keys})),
        ("GET", "/reservations", st.none()),
        (
            "PUT",
            f"/inventory/{kind}",
            st.fixed_dictionaries(
                {
                    "resource": st.one_of(st.just("Lisbon"), anything),
                    "day": st.one_of(edge_days, anything),
                    "capacity": st.one_of(huge_ints, anything),
                }
            ),
        ),
        ("POST", "/admin/outages/lift", st.fixed_dictionaries({"booking_id": anything, "kind": anything})),
        ("GET", "/stats", st.none()),
        ("GET", "/health", st.none()),
    ]
    method, path, bodies = draw(st.sampled_from(routes))
    if "{key}" in path:
        path = path.replace("{key}", segment(draw(keys.filter(lambda s: s not in ("", ".", "..")))))
    if draw(st.booleans()):
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
    if draw(st.integers(0, 9)) == 0:
        path = draw(
            st.sampled_from(["/", "/car/", "/car/reservations/", "//car/reservations/", "/admin/", "/reservations/"])
        ) + draw(odd_text.map(segment))
    body: Any = draw(bodies)
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.binary(max_size=64)) + b"\xff"  # not JSON, not even UTF-8
    elif draw(st.integers(0, 9)) == 0:
        body = json.dumps({"booking_id": SEED, "details": "@"})[:-1].encode().replace(b'"@"', draw(deep_json).encode())
    headers: dict[str, Any] = {"Content-Type": draw(content_type("application/json"))}
    if draw(st.booleans()):
        headers["X-Scenario"] = draw(
            st.sampled_from(["happy", "nope", "", "HAPPY", "happy\tx", b"h\xc3\xa9", b"\xff", *FAULTS])
        )
    return method, path, body, headers


def segment(text: str) -> str:
    """A path segment carrying any text: percent-encoded, lone surrogates included."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def send(url: str, method: str, path: str, body: Any, headers: dict[str, Any]) -> httpx.Response:
    if isinstance(body, bytes):
        content = body
    elif body is None:
        content = b""
    else:
        # ensure_ascii: lone surrogates travel as \\udxxx escapes, as a buggy client would send them.
        content = json.dumps(body).encode()
    return httpx.request(
        method, url + path, content=content, headers={"Content-Type": "application/json", **headers}, timeout=30
    )


@given(requests())
# Regression: a refused cancel (422, another booking's key) counted an attempt.
@example(("POST", "/car/reservations/seed-1:car/cancel", {"booking_id": "seed-1:car"}, {}))
@example(("POST", "/car/cancellations", {"booking_id": "seed-2", "idempotency_key": "seed-1:car"}, {}))
# Regression: a lone surrogate (a \ud800 escape) in any string was a 500.
@example(("POST", "/car/cancellations", {"booking_id": "b\ud800", "idempotency_key": "b\ud800:car"}, {}))
@example(("PUT", "/inventory/car", {"resource": "\udfff", "day": "2030-01-01", "capacity": 1}, {}))
@example(("POST", "/admin/outages/lift", {"booking_id": "\ud800", "kind": "car"}, {}))
# Regressions found by a fuzz from outside: an unknown charset, deep nesting, the calendar's
# last day, capacities SQLite cannot store, days that are no dates, a forged key
# using up a booking's injected 503s, and a flight booked outright being ticketed.
@example(("POST", "/car/reservations", {"booking_id": "x"}, {"Content-Type": "application/json; charset=bogus"}))
@example(
    (
        "POST",
        "/car/cancellations",
        {"booking_id": "x", "idempotency_key": [[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]},
        {},
    )
)
@example(
    ("POST", "/flight/reservations", {**RESERVE["flight"], "details": {**DETAILS["flight"], "date": "9999-12-31"}}, {})
)
@example(("PUT", "/inventory/car", {"resource": "Lisbon", "day": "2030-01-01", "capacity": 2**63}, {}))
@example(("PUT", "/inventory/car", {"resource": "Lisbon", "day": "2027-1-4", "capacity": 0}, {}))
@example(
    (
        "POST",
        "/car/cancellations",
        {"booking_id": "EVIL", "idempotency_key": f"{HELD}:car"},
        {"X-Scenario": "car-cancel-flaky"},
    )
)
@example(
    (
        "POST",
        "/hotel/confirmations",
        {"booking_id": "EVIL", "idempotency_key": f"{HELD}:hotel"},
        {"X-Scenario": "finalize-hotel-flaky"},
    )
)
@example(("POST", "/flight/tickets", {"booking_id": SEED, "idempotency_key": f"{SEED}:flight"}, {}))
def test_any_request_gets_no_5xx_a_json_4xx_and_a_refusal_changes_nothing(
    ledger: ProviderService, req: tuple[str, str, Any, dict[str, Any]]
) -> None:
    method, path, body, headers = req
    before = dump(ledger.db)
    response = send(ledger.url, method, path, body, headers)
    assert response.status_code < 500 or response.status_code == 503, (response.status_code, response.text[:500])
    after = dump(ledger.db)
    # A flight booked outright cannot be ticketed: its undo would then never succeed.
    with sqlite3.connect(f"file:{ledger.db}?mode=ro", uri=True) as conn:
        sql = "SELECT idempotency_key FROM reservations WHERE ticket_number IS NOT NULL AND held_until IS NULL"
        assert conn.execute(sql).fetchall() == []
        # Every capacity is for a real day, spelled as the ledger spells days.
        for (day,) in conn.execute("SELECT day FROM inventory"):
            assert date.fromisoformat(day).isoformat() == day, day
    if response.status_code >= 400:
        if method != "HEAD":
            answer = response.json()
            assert isinstance(answer, dict) and isinstance(answer.get("message"), str) and answer["message"]
            assert isinstance(answer.get("error"), str) and answer["error"]
        counted = set(after["attempts"]) - set(before["attempts"])
        if response.status_code == 503 and method != "HEAD":
            assert answer["error"] == "Unavailable" and headers.get("X-Scenario") in FAULTS, answer
            # An injected fault counts one attempt, on a key that is the request's booking's own.
            kind, booking_id = path.split("/")[1], body.get("booking_id") if isinstance(body, dict) else None
            for key, _op, _count in counted:
                assert owner(before, key) in (None, (kind, booking_id)), f"{key} of another booking took a fault"
            after["attempts"] = before["attempts"]
        assert after == before, f"{response.status_code} {response.text[:300]} changed the ledger"
