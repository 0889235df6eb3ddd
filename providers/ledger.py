"""The providers' SQLite ledger: reservations, inventory and attempt counters.

Every write is one ``BEGIN IMMEDIATE`` transaction, so a request either
changes the ledger completely or not at all. The ledger never sleeps and never
does network I/O: the HTTP layer owns latency and fault injection.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS reservations (
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
CREATE INDEX IF NOT EXISTS reservations_booking ON reservations (booking_id);
CREATE INDEX IF NOT EXISTS reservations_inventory ON reservations (kind, resource, day, status);

-- An undo that arrived before its booking: the booking must then never happen.
CREATE TABLE IF NOT EXISTS voided_keys (
    idempotency_key TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    booking_id      TEXT NOT NULL,
    voided_at       TEXT NOT NULL
);

-- Capacity per (kind, resource, day); absent rows use the service default.
CREATE TABLE IF NOT EXISTS inventory (
    kind     TEXT NOT NULL,
    resource TEXT NOT NULL,
    day      TEXT NOT NULL,
    capacity INTEGER NOT NULL CHECK (capacity >= 0),
    PRIMARY KEY (kind, resource, day)
);

-- Undo outages an operator has lifted, per booking and kind (scenario car-cancel-outage).
CREATE TABLE IF NOT EXISTS lifted_outages (
    booking_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    lifted_at  TEXT NOT NULL,
    PRIMARY KEY (booking_id, kind)
);

-- How many times each key has been tried, per operation (drives "fail the first N").
CREATE TABLE IF NOT EXISTS attempts (
    idempotency_key TEXT NOT NULL,
    op              TEXT NOT NULL,
    count           INTEGER NOT NULL,
    PRIMARY KEY (idempotency_key, op)
);
"""

_PREFIX = {"car": "CAR", "hotel": "HTL", "flight": "FLT"}

#: Columns added after the first release. A ledger file from an older ``make
#: run`` lacks them; ``_migrate`` adds and backfills them in place.
_ADDED_COLUMNS = {"request_hash": "TEXT", "last_day": "TEXT"}


def request_hash(*, kind: str, booking_id: str, traveller: dict[str, Any], details: dict[str, Any]) -> str:
    """Fingerprint of what a booking call asked for (canonical JSON, SHA-256).

    Stored with the key so that a key reused for a different trip (for
    example once the namespace's retention has let the workflow id run again)
    is refused instead of answered with the old booking.
    """
    canonical = json.dumps(
        {"kind": kind, "booking_id": booking_id, "traveller": traveller, "details": details},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def days_held(kind: str, details: dict[str, Any]) -> tuple[str, str]:
    """First and last day (ISO, inclusive) a reservation takes inventory.

    A car is held from pick-up to drop-off day; a hotel room every night from
    check-in up to, not including, the check-out night; a flight on its date.
    """
    if kind == "car":
        return details["pickup"], details["dropoff"]
    if kind == "hotel":
        last_night = date.fromisoformat(details["check_out"]) - timedelta(days=1)
        return details["check_in"], max(last_night.isoformat(), details["check_in"])
    return details["date"], details["date"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class LedgerConflict(Exception):
    """A request that contradicts what the ledger already holds."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


@dataclass(frozen=True)
class ReserveOutcome:
    row: dict[str, Any]
    #: False when the key was already booked and the stored booking is returned.
    created: bool


class Ledger:
    def __init__(self, path: Path, *, default_capacity: int) -> None:
        self.path = path
        self.default_capacity = default_capacity
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection used only from the event loop thread; autocommit mode
        # so that transactions are explicit.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a ledger file written by an older release up to this schema."""
        with self._tx():
            have = {row["name"] for row in self._db.execute("PRAGMA table_info(reservations)")}
            for column, sql_type in _ADDED_COLUMNS.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE reservations ADD COLUMN {column} {sql_type}")
            stale = self._db.execute(
                "SELECT idempotency_key, kind, booking_id, traveller, details FROM reservations"
                " WHERE request_hash IS NULL OR last_day IS NULL"
            ).fetchall()
            for row in stale:
                details = json.loads(row["details"])
                self._db.execute(
                    "UPDATE reservations SET request_hash = ?, last_day = ? WHERE idempotency_key = ?",
                    (
                        request_hash(
                            kind=row["kind"],
                            booking_id=row["booking_id"],
                            traveller=json.loads(row["traveller"]),
                            details=details,
                        ),
                        days_held(row["kind"], details)[1],
                        row["idempotency_key"],
                    ),
                )

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def count_attempt(self, key: str, op: str) -> int:
        """Record one more attempt for ``key`` and return its 1-based number."""
        with self._tx():
            self._db.execute(
                "INSERT INTO attempts (idempotency_key, op, count) VALUES (?, ?, 1) "
                "ON CONFLICT (idempotency_key, op) DO UPDATE SET count = count + 1",
                (key, op),
            )
            row = self._db.execute(
                "SELECT count FROM attempts WHERE idempotency_key = ? AND op = ?", (key, op)
            ).fetchone()
        return int(row["count"])

    def attempts(self, keys: list[str]) -> dict[str, dict[str, int]]:
        """How many requests reached each key, per operation (``reserve``, ``cancel``)."""
        found: dict[str, dict[str, int]] = {key: {} for key in keys}
        for key in keys:
            for row in self._db.execute("SELECT op, count FROM attempts WHERE idempotency_key = ?", (key,)):
                found[key][row["op"]] = int(row["count"])
        return found

    def reserve(
        self,
        *,
        kind: str,
        key: str,
        booking_id: str,
        resource: str,
        traveller: dict[str, Any],
        details: dict[str, Any],
        force_sold_out: bool = False,
    ) -> ReserveOutcome:
        fingerprint = request_hash(kind=kind, booking_id=booking_id, traveller=traveller, details=details)
        first_day, last_day = days_held(kind, details)
        with self._tx():
            existing = self._db.execute("SELECT * FROM reservations WHERE idempotency_key = ?", (key,)).fetchone()
            if existing is not None:
                if existing["kind"] != kind or existing["booking_id"] != booking_id:
                    raise LedgerConflict(
                        "InvalidBooking",
                        f"idempotency key {key!r} already belongs to another {existing['kind']} booking",
                    )
                if existing["request_hash"] != fingerprint:
                    raise LedgerConflict(
                        "InvalidBooking",
                        f"idempotency key {key!r} was already used for a {kind} booking with different"
                        " traveller or trip details; use a new key (a new workflow id) for a new trip",
                    )
                if existing["status"] == "cancelled":
                    raise LedgerConflict("ReservationVoided", f"reservation for key {key!r} was cancelled")
                return ReserveOutcome(_row(existing), created=False)
            if self._db.execute("SELECT 1 FROM voided_keys WHERE idempotency_key = ?", (key,)).fetchone():
                raise LedgerConflict("ReservationVoided", f"key {key!r} was cancelled before this booking arrived")
            if force_sold_out:
                raise LedgerConflict("SoldOut", f"no {kind} left for {resource} on {first_day}")
            full = self._first_full_day(kind, resource, first_day, last_day)
            if full is not None:
                raise LedgerConflict("SoldOut", f"no {kind} left for {resource} on {full}")
            reservation_id = secrets.token_hex(8)
            confirmation = f"{_PREFIX[kind]}-{secrets.token_hex(3).upper()}"
            self._db.execute(
                "INSERT INTO reservations (idempotency_key, reservation_id, confirmation, kind, booking_id,"
                " resource, day, last_day, traveller, details, status, created_at, request_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?)",
                (
                    key,
                    reservation_id,
                    confirmation,
                    kind,
                    booking_id,
                    resource,
                    first_day,
                    last_day,
                    json.dumps(traveller, sort_keys=True),
                    json.dumps(details, sort_keys=True),
                    _now(),
                    fingerprint,
                ),
            )
            row = self._db.execute("SELECT * FROM reservations WHERE idempotency_key = ?", (key,)).fetchone()
        return ReserveOutcome(_row(row), created=True)

    def cancel(self, *, kind: str, key: str, booking_id: str) -> str:
        """Release the reservation for ``key``; return what happened.

        ``cancelled``: released now. ``already_cancelled``: released before.
        ``not_booked``: nothing held, and the key is voided so a late booking
        call with it is refused.

        A key of another booking is refused (``InvalidBooking``), never
        cancelled or voided. A key nothing was booked under belongs to
        ``booking_id`` only if it is ``{booking_id}:{kind}`` (what the saga
        sends) or ``booking_id`` itself: a mangled key must not be voided and
        answered ``not_booked`` while the real booking stays held.
        """
        with self._tx():
            existing = self._db.execute(
                "SELECT kind, booking_id, status FROM reservations WHERE idempotency_key = ?", (key,)
            ).fetchone()
            if existing is None:
                voided = self._db.execute(
                    "SELECT kind, booking_id FROM voided_keys WHERE idempotency_key = ?", (key,)
                ).fetchone()
                owner_ok = key in (f"{booking_id}:{kind}", booking_id)
                if voided is not None:
                    owner_ok = owner_ok and (voided["kind"], voided["booking_id"]) == (kind, booking_id)
                if not owner_ok:
                    raise LedgerConflict(
                        "InvalidBooking",
                        f"idempotency key {key!r} is not the {kind} key of booking {booking_id!r};"
                        " nothing was cancelled",
                    )
                self._db.execute(
                    "INSERT OR IGNORE INTO voided_keys (idempotency_key, kind, booking_id, voided_at)"
                    " VALUES (?, ?, ?, ?)",
                    (key, kind, booking_id, _now()),
                )
                return "not_booked"
            if existing["kind"] != kind or existing["booking_id"] != booking_id:
                raise LedgerConflict(
                    "InvalidBooking", f"idempotency key {key!r} belongs to another {existing['kind']} booking"
                )
            if existing["status"] == "cancelled":
                return "already_cancelled"
            self._db.execute(
                "UPDATE reservations SET status = 'cancelled', cancelled_at = ? WHERE idempotency_key = ?",
                (_now(), key),
            )
            return "cancelled"

    def lift_outage(self, *, booking_id: str, kind: str) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO lifted_outages (booking_id, kind, lifted_at) VALUES (?, ?, ?)",
                (booking_id, kind, _now()),
            )

    def outage_lifted(self, *, booking_id: str, kind: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM lifted_outages WHERE booking_id = ? AND kind = ?", (booking_id, kind)
        ).fetchone()
        return row is not None

    def set_capacity(self, *, kind: str, resource: str, day: str, capacity: int) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO inventory (kind, resource, day, capacity) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (kind, resource, day) DO UPDATE SET capacity = excluded.capacity",
                (kind, resource, day, capacity),
            )

    def _first_full_day(self, kind: str, resource: str, first_day: str, last_day: str) -> str | None:
        """The first day in ``first_day..last_day`` with no capacity left, if any."""
        day = date.fromisoformat(first_day)
        end = date.fromisoformat(last_day)
        while day <= end:
            if self._available(kind, resource, day.isoformat()) <= 0:
                return day.isoformat()
            day += timedelta(days=1)
        return None

    def _available(self, kind: str, resource: str, day: str) -> int:
        row = self._db.execute(
            "SELECT capacity FROM inventory WHERE kind = ? AND resource = ? AND day = ?", (kind, resource, day)
        ).fetchone()
        capacity = row["capacity"] if row else self.default_capacity
        (held,) = self._db.execute(
            "SELECT COUNT(*) FROM reservations WHERE kind = ? AND resource = ? AND status = 'active'"
            " AND day <= ? AND COALESCE(last_day, day) >= ?",
            (kind, resource, day, day),
        ).fetchone()
        return int(capacity) - int(held)

    def list(self, booking_id: str | None = None) -> list[dict[str, Any]]:
        if booking_id is None:
            rows = self._db.execute("SELECT * FROM reservations ORDER BY created_at, kind").fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM reservations WHERE booking_id = ? ORDER BY created_at, kind", (booking_id,)
            ).fetchall()
        return [_row(r) for r in rows]


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["traveller"] = json.loads(out["traveller"])
    out["details"] = json.loads(out["details"])
    return out
