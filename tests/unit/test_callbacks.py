"""The callback signature (``trip.callbacks``) and the ledger's pending reservations, without servers."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from providers.ledger import Ledger
from providers.storage import RESERVATIONS_TABLE
from trip.callbacks import (
    HEADER_DELIVERY,
    HEADER_SIGNATURE,
    WINDOW_S,
    BadSignature,
    load_secrets,
    signed_headers,
    verify,
)
from trip.models import Kind

SECRET = b"s3cret"
BODY = b'{"booking_id":"trip-1","reference":"FLT-Q1"}'


def reason(headers: dict[str, str], body: bytes = BODY, *, now: float, secret: bytes = SECRET) -> str:
    with pytest.raises(BadSignature) as caught:
        verify(secret, headers, body, now=now)
    return caught.value.reason


def test_a_signed_callback_verifies_and_names_its_delivery() -> None:
    now = time.time()
    assert verify(SECRET, signed_headers(SECRET, int(now), BODY, "d-1"), BODY, now=now) == "d-1"


def test_any_change_to_body_secret_or_signature_is_forged() -> None:
    now = time.time()
    headers = signed_headers(SECRET, int(now), BODY, "d-1")
    assert reason(headers, BODY.replace(b"FLT-Q1", b"FLT-Q2"), now=now) == "forged"
    assert reason(headers, now=now, secret=b"another") == "forged"
    assert reason({**headers, HEADER_SIGNATURE: "v1=" + "0" * 64}, now=now) == "forged"
    # The timestamp is signed too: moving it into the window breaks the signature.
    old = signed_headers(SECRET, int(now) - WINDOW_S - 60, BODY, "d-1")
    assert reason({**old, "X-Callback-Timestamp": str(int(now))}, now=now) == "forged"


def test_a_callback_signed_outside_the_window_is_expired_either_way() -> None:
    now = time.time()
    assert reason(signed_headers(SECRET, int(now) - WINDOW_S - 1, BODY, "d"), now=now) == "expired"
    assert reason(signed_headers(SECRET, int(now) + WINDOW_S + 1, BODY, "d"), now=now) == "expired"
    assert verify(SECRET, signed_headers(SECRET, int(now) - WINDOW_S + 5, BODY, "d"), BODY, now=now) == "d"


def test_a_callback_without_its_headers_is_refused() -> None:
    now = time.time()
    headers = signed_headers(SECRET, int(now), BODY, "d-1")
    assert reason({k: v for k, v in headers.items() if k != HEADER_DELIVERY}, now=now) == "missing"
    assert reason({**headers, "X-Callback-Timestamp": "soon"}, now=now) == "missing"


def test_a_signature_header_that_is_not_ascii_is_forged_not_an_error() -> None:
    # A web server hands header bytes over as latin-1 text: "v1=\xe9" must be a
    # 401 like any wrong signature, not a TypeError (a 500) from the comparison.
    now = time.time()
    headers = signed_headers(SECRET, int(now), BODY, "d-1")
    assert reason({**headers, HEADER_SIGNATURE: "v1=\u00e9" + "0" * 63}, now=now) == "forged"


def test_secrets_come_from_the_file_and_a_variable_wins(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"flight": "from-file", "hotel": "hotel-file", "bogus": "x"}))
    path.chmod(0o600)
    found = load_secrets(path, env={"CALLBACK_SECRET_FLIGHT": "from-env"})
    assert found == {Kind.FLIGHT: b"from-env", Kind.HOTEL: b"hotel-file"}
    assert load_secrets(env={"CALLBACK_SECRETS_FILE": str(path)})[Kind.FLIGHT] == b"from-file"
    assert load_secrets(env={}) == {}


def test_a_secrets_file_others_can_read_is_refused(tmp_path: Path) -> None:
    # Anyone who can read the file can forge a confirmation: like ssh with its
    # keys, refuse it rather than trust secrets that may have leaked.
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"flight": "from-file"}))
    for mode in (0o644, 0o640, 0o604):
        path.chmod(mode)
        with pytest.raises(ValueError, match="chmod 600"):
            load_secrets(path, env={})
    path.chmod(0o400)
    assert load_secrets(path, env={}) == {Kind.FLIGHT: b"from-file"}


TRAVELLER = {"email": "ada@example.com", "name": "Ada"}
FLIGHT = {"date": "2030-03-01", "destination": "Lisbon", "origin": "London"}


def reserve_pending(ledger: Ledger, key: str = "b:flight") -> dict[str, object]:
    outcome = ledger.reserve(
        kind="flight",
        key=key,
        booking_id=key.split(":")[0],
        resource="London->Lisbon",
        traveller=TRAVELLER,
        details=FLIGHT,
        pending=True,
    )
    return outcome.row


def test_a_ledger_from_before_pending_reservations_is_migrated_and_takes_them(tmp_path: Path) -> None:
    # `make run` keeps its ledger; the previous release's CHECK constraint knows no `pending`.
    db = tmp_path / "previous.sqlite"
    previous = RESERVATIONS_TABLE.format(name="reservations").replace(", 'pending'", "")
    previous = previous.replace(",\n    reference       TEXT", "")
    assert "pending" not in previous.split("CHECK (status")[1].split(")")[0]
    with sqlite3.connect(db) as conn:
        conn.executescript(previous)
    ledger = Ledger(db, default_capacity=1)
    row = reserve_pending(ledger)
    assert row["status"] == "pending" and str(row["reference"]).startswith("FLT-Q")
    # A retry gets the same pending row; it takes inventory like a booking.
    assert reserve_pending(ledger) == row
    with pytest.raises(Exception, match="no flight left"):
        reserve_pending(ledger, "other:flight")
    assert ledger.confirm_pending("b:flight") and ledger.status_of("b:flight") == "active"
    assert not ledger.confirm_pending("b:flight")  # only once
    ledger.close()


def test_a_cancelled_pending_reservation_is_never_confirmed(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite", default_capacity=10)
    reserve_pending(ledger)
    assert ledger.cancel(kind="flight", key="b:flight", booking_id="b") == "cancelled"
    assert not ledger.confirm_pending("b:flight")
    assert ledger.status_of("b:flight") == "cancelled"
    ledger.close()


def test_the_form_and_the_cli_share_the_async_deadline_rule() -> None:
    from datetime import date

    from trip.forms import BookingInputError, demo_trip
    from web.booking import booking_request

    today = date.today()
    assert booking_request({**demo_trip(today), "async_deadline": "30"}, today).async_deadline_s == 30
    assert booking_request(demo_trip(today), today).async_deadline_s is None
    for bad in ("0", "-5", "soon"):
        with pytest.raises(BookingInputError) as caught:
            booking_request({**demo_trip(today), "async_deadline": bad}, today)
        assert set(caught.value.errors) == {"async_deadline"}, bad
