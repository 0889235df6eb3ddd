"""The providers' SQLite ledger: reservations, inventory and attempt counters.

Every write is one ``BEGIN IMMEDIATE`` transaction, so a request either
changes the ledger completely or not at all. The ledger never sleeps and never
does network I/O: the HTTP layer owns latency and fault injection.

Holds lapse lazily: there is no timer. Every transaction (and every read of
the ledger) first marks each ``held`` row whose ``held_until`` has passed as
``expired``, so no caller can ever see, confirm or count a lapsed hold. While
the service is stopped the file may still say ``held``; the first request
after a restart settles it.
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

#: The reservations table; ``{name}`` lets ``_migrate`` build a replacement
#: when an older file's CHECK constraint does not know the hold statuses.
RESERVATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
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
    -- held: placed with a TTL, lapses at held_until unless confirmed or ticketed;
    -- expired: it lapsed (it no longer takes inventory); active: booked, confirmed
    -- or ticketed; cancelled: undone.
    status          TEXT NOT NULL CHECK (status IN ('held', 'active', 'expired', 'cancelled')),
    created_at      TEXT NOT NULL,
    cancelled_at    TEXT,
    request_hash    TEXT,
    held_until      TEXT,
    confirmed_at    TEXT,
    ticket_number   TEXT
);
"""

#: Indexes, created once ``_migrate`` has added the columns they cover.
INDEXES = """
CREATE INDEX IF NOT EXISTS reservations_booking ON reservations (booking_id);
CREATE INDEX IF NOT EXISTS reservations_inventory ON reservations (kind, resource, day, status);
CREATE INDEX IF NOT EXISTS reservations_holds ON reservations (status, held_until);
"""

SCHEMA = (
    RESERVATIONS_TABLE.format(name="reservations")
    + """
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
)

_PREFIX = {"car": "CAR", "hotel": "HTL", "flight": "FLT"}

#: Columns added after the first release. A ledger file from an older ``make
#: run`` lacks them; ``_migrate`` adds and backfills them in place.
_ADDED_COLUMNS = {
    "request_hash": "TEXT",
    "last_day": "TEXT",
    "held_until": "TEXT",
    "confirmed_at": "TEXT",
    "ticket_number": "TEXT",
}


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


def _timestamp(moment: datetime) -> str:
    # One fixed format (UTC, milliseconds, "+00:00"), so that SQL can compare
    # timestamps as text: the expiry sweep relies on it.
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _now() -> str:
    return _timestamp(datetime.now(timezone.utc))


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
        self._db.executescript(INDEXES)

    def _migrate(self) -> None:
        """Bring a ledger file written by an older release up to this schema."""
        with _Transaction(self._db, sweep=False):
            have = {row["name"] for row in self._db.execute("PRAGMA table_info(reservations)")}
            for column, sql_type in _ADDED_COLUMNS.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE reservations ADD COLUMN {column} {sql_type}")
            (table_sql,) = self._db.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'reservations'"
            ).fetchone()
            if "CHECK (status IN" in table_sql and "'held'" not in table_sql:
                self._allow_hold_statuses()
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

    def _allow_hold_statuses(self) -> None:
        """Rebuild the reservations table under the current CHECK constraint.

        SQLite cannot alter a CHECK constraint, and the previous release's one
        refuses ``held`` and ``expired``. Copy every row into a table of the
        current shape and put it in the old one's place, inside the caller's
        transaction: a crash half-way leaves the old file as it was.
        """
        columns = ", ".join(row["name"] for row in self._db.execute("PRAGMA table_info(reservations)"))
        self._db.execute(RESERVATIONS_TABLE.format(name="reservations_migrating"))
        self._db.execute(f"INSERT INTO reservations_migrating ({columns}) SELECT {columns} FROM reservations")
        self._db.execute("DROP TABLE reservations")  # its indexes go with it; INDEXES rebuilds them
        self._db.execute("ALTER TABLE reservations_migrating RENAME TO reservations")

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def next_attempt(self, key: str, op: str) -> int:
        """The 1-based number the next attempt for ``key`` will have; records nothing."""
        row = self._db.execute("SELECT count FROM attempts WHERE idempotency_key = ? AND op = ?", (key, op)).fetchone()
        return int(row["count"]) + 1 if row else 1

    def count_attempt(self, key: str, op: str) -> int:
        """Record one more attempt for ``key`` and return its 1-based number.

        Only attempts that were answered (a success or an injected fault) are
        counted: a request the ledger refuses leaves every table as it was, so
        a forged or mistaken call cannot use up a real booking's faults.
        """
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
        hold_ttl_s: float | None = None,
    ) -> ReserveOutcome:
        """Book ``key``, or with ``hold_ttl_s`` place a hold that lapses after it.

        ``hold_ttl_s`` is not part of the request fingerprint: the first call
        for a key decides whether it is a hold and when it lapses. A retry
        (whatever TTL it carries) gets the stored answer, so retrying can never
        stretch a hold beyond what was first promised.
        """
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
                if existing["status"] == "expired":
                    raise LedgerConflict("HoldExpired", f"the hold for key {key!r} lapsed at {existing['held_until']}")
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
            now = datetime.now(timezone.utc)
            held_until = None if hold_ttl_s is None else _timestamp(now + timedelta(seconds=hold_ttl_s))
            self._db.execute(
                "INSERT INTO reservations (idempotency_key, reservation_id, confirmation, kind, booking_id,"
                " resource, day, last_day, traveller, details, status, created_at, request_hash, held_until)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    "active" if held_until is None else "held",
                    _timestamp(now),
                    fingerprint,
                    held_until,
                ),
            )
            row = self._db.execute("SELECT * FROM reservations WHERE idempotency_key = ?", (key,)).fetchone()
        return ReserveOutcome(_row(row), created=True)

    def cancel(self, *, kind: str, key: str, booking_id: str) -> str:
        """Release the reservation for ``key``; return what happened.

        ``cancelled``: released now (a booking or a hold). ``already_cancelled``:
        released before. ``expired``: a hold that lapsed on its own, nothing
        left to release. ``not_booked``: nothing held, and the key is voided so
        a late booking call with it is refused.

        A ticketed flight is refused (``InvalidBooking``): an issued ticket
        cannot be undone, and answering "cancelled" would be a lie.

        A key of another booking is refused (``InvalidBooking``), never
        cancelled or voided. A key nothing was booked under belongs to
        ``booking_id`` only if it is ``{booking_id}:{kind}`` (what the saga
        sends) or ``booking_id`` itself: a mangled key must not be voided and
        answered ``not_booked`` while the real booking stays held.
        """
        with self._tx():
            existing = self._db.execute(
                "SELECT kind, booking_id, status, ticket_number FROM reservations WHERE idempotency_key = ?", (key,)
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
            if existing["status"] == "expired":
                return "expired"
            if existing["ticket_number"] is not None:
                raise LedgerConflict(
                    "InvalidBooking",
                    f"ticket {existing['ticket_number']} was issued for key {key!r}; an issued ticket cannot"
                    " be cancelled here",
                )
            self._db.execute(
                "UPDATE reservations SET status = 'cancelled', cancelled_at = ? WHERE idempotency_key = ?",
                (_now(), key),
            )
            return "cancelled"

    def confirm(self, *, kind: str, key: str, booking_id: str) -> tuple[dict[str, Any], str]:
        """Turn the hold for ``key`` into a booking; return the row and what happened.

        ``confirmed``: the hold became ``active`` now. ``already_confirmed``:
        it was active already (a retry, or a booking that was never a hold).
        """
        with self._tx():
            row = self._holding(kind=kind, key=key, booking_id=booking_id, action="confirm")
            if row["status"] == "active":
                return _row(row), "already_confirmed"
            self._db.execute(
                "UPDATE reservations SET status = 'active', confirmed_at = ? WHERE idempotency_key = ?", (_now(), key)
            )
            return self._get(key), "confirmed"

    def ticket(self, *, key: str, booking_id: str) -> tuple[dict[str, Any], str]:
        """Issue the ticket for the flight held under ``key``; the row and what happened.

        ``ticketed``: issued now, and the hold became ``active``.
        ``already_ticketed``: a retry; the same ticket number, never a second one.
        """
        with self._tx():
            row = self._holding(kind="flight", key=key, booking_id=booking_id, action="ticket")
            if row["ticket_number"] is not None:
                return _row(row), "already_ticketed"
            number = f"TKT-{secrets.randbelow(10**10):010d}"
            self._db.execute(
                "UPDATE reservations SET status = 'active', confirmed_at = COALESCE(confirmed_at, ?),"
                " ticket_number = ? WHERE idempotency_key = ?",
                (_now(), number, key),
            )
            return self._get(key), "ticketed"

    def _holding(self, *, kind: str, key: str, booking_id: str, action: str) -> sqlite3.Row:
        """The ``held`` or ``active`` row for ``key`` of ``booking_id``, or the refusal why not."""
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM reservations WHERE idempotency_key = ?", (key,)
        ).fetchone()
        if row is None:
            if self._db.execute("SELECT 1 FROM voided_keys WHERE idempotency_key = ?", (key,)).fetchone():
                raise LedgerConflict("ReservationVoided", f"key {key!r} was cancelled before anything was held")
            raise LedgerConflict("InvalidBooking", f"nothing is held under key {key!r}; nothing to {action}")
        if row["kind"] != kind or row["booking_id"] != booking_id:
            raise LedgerConflict(
                "InvalidBooking", f"idempotency key {key!r} is not the {kind} key of booking {booking_id!r}"
            )
        if row["status"] == "cancelled":
            raise LedgerConflict("ReservationVoided", f"reservation for key {key!r} was cancelled")
        if row["status"] == "expired":
            raise LedgerConflict("HoldExpired", f"the hold for key {key!r} lapsed at {row['held_until']}")
        return row

    def _get(self, key: str) -> dict[str, Any]:
        return _row(self._db.execute("SELECT * FROM reservations WHERE idempotency_key = ?", (key,)).fetchone())

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
            "SELECT COUNT(*) FROM reservations WHERE kind = ? AND resource = ? AND status IN ('held', 'active')"
            " AND day <= ? AND COALESCE(last_day, day) >= ?",
            (kind, resource, day, day),
        ).fetchone()
        return int(capacity) - int(held)

    def list(self, booking_id: str | None = None) -> list[dict[str, Any]]:
        with self._tx():  # settles lapsed holds first, so nobody reads "held" past its expiry
            if booking_id is None:
                rows = self._db.execute("SELECT * FROM reservations ORDER BY created_at, kind").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM reservations WHERE booking_id = ? ORDER BY created_at, kind", (booking_id,)
                ).fetchall()
        return [_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many reservations are in each status (lapsed holds settled first)."""
        with self._tx():
            rows = self._db.execute("SELECT status, COUNT(*) AS n FROM reservations GROUP BY status").fetchall()
        return {row["status"]: int(row["n"]) for row in rows}


class _Transaction:
    def __init__(self, db: sqlite3.Connection, *, sweep: bool = True) -> None:
        self._db = db
        self._sweep = sweep

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        if self._sweep:
            # Lazy expiry: whatever this transaction reads or counts, a lapsed
            # hold is already ``expired`` in it. The status index keeps this cheap.
            self._db.execute(
                "UPDATE reservations SET status = 'expired' WHERE status = 'held' AND held_until <= ?", (_now(),)
            )

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["traveller"] = json.loads(out["traveller"])
    out["details"] = json.loads(out["details"])
    return out
