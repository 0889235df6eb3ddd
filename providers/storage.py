"""The providers' SQLite file: its schema, the migration of files written by older
releases, one-transaction writes with the lazy expiry of holds, and row decoding.

Every write is one ``BEGIN IMMEDIATE`` transaction, so a request either
changes the ledger completely or not at all. ``Transaction`` first marks each
``held`` row whose ``held_until`` has passed as ``expired``, so nothing inside
it can see, confirm or count a lapsed hold. Nothing here knows what a booking
means: the rules live in ``providers.ledger``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

#: The reservations table; ``{name}`` lets ``migrate`` build a replacement
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
    -- or ticketed; cancelled: undone; pending: answered 202, confirmed later by a
    -- signed callback (it takes inventory, and becomes active once the callback is accepted).
    status          TEXT NOT NULL CHECK (status IN ('held', 'active', 'expired', 'cancelled', 'pending')),
    created_at      TEXT NOT NULL,
    cancelled_at    TEXT,
    request_hash    TEXT,
    held_until      TEXT,
    confirmed_at    TEXT,
    ticket_number   TEXT,
    reference       TEXT
);
"""

#: Indexes, created once ``migrate`` has added the columns they cover.
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

-- Every attempt to deliver a confirmation callback (a pending reservation's).
CREATE TABLE IF NOT EXISTS callback_deliveries (
    delivery_id     TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    booking_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    at              TEXT NOT NULL,
    -- the receiver's HTTP status, or NULL when it could not be reached
    http_status     INTEGER,
    -- delivered | refused | unreachable | abandoned (the reservation was cancelled first)
    outcome         TEXT NOT NULL,
    detail          TEXT,
    PRIMARY KEY (delivery_id, attempt)
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

#: Columns added after the first release. A ledger file from an older ``make
#: run`` lacks them; ``migrate`` adds and backfills them in place.
_ADDED_COLUMNS = {
    "request_hash": "TEXT",
    "last_day": "TEXT",
    "held_until": "TEXT",
    "confirmed_at": "TEXT",
    "ticket_number": "TEXT",
    "reference": "TEXT",
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


def timestamp(moment: datetime) -> str:
    # One fixed format (UTC, milliseconds, "+00:00"), so that SQL can compare
    # timestamps as text: the expiry sweep relies on it.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def now() -> str:
    return timestamp(datetime.now(UTC))


def connect(path: Path) -> sqlite3.Connection:
    """Open (or create) the ledger file at ``path``, in WAL mode, on the current schema.

    Autocommit mode, so that every transaction is explicit (``Transaction``);
    the connection is meant for one thread, the event loop's.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(SCHEMA)
    migrate(db)
    db.executescript(INDEXES)
    return db


def migrate(db: sqlite3.Connection) -> None:
    """Bring a ledger file written by an older release up to this schema, in one transaction."""
    with Transaction(db, sweep=False):
        have = {row["name"] for row in db.execute("PRAGMA table_info(reservations)")}
        for column, sql_type in _ADDED_COLUMNS.items():
            if column not in have:
                db.execute(f"ALTER TABLE reservations ADD COLUMN {column} {sql_type}")
        (table_sql,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'reservations'"
        ).fetchone()
        if "CHECK (status IN" in table_sql and "'pending'" not in table_sql:
            _allow_hold_statuses(db)
        stale = db.execute(
            "SELECT idempotency_key, kind, booking_id, traveller, details FROM reservations"
            " WHERE request_hash IS NULL OR last_day IS NULL"
        ).fetchall()
        for row in stale:
            details = json.loads(row["details"])
            db.execute(
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


def _allow_hold_statuses(db: sqlite3.Connection) -> None:
    """Rebuild the reservations table under the current CHECK constraint.

    SQLite cannot alter a CHECK constraint, and older releases' ones refuse
    ``held`` and ``expired``, or ``pending``. Copy every row into a table of the
    current shape and put it in the old one's place, inside the caller's
    transaction: a crash half-way leaves the old file as it was.
    """
    columns = ", ".join(row["name"] for row in db.execute("PRAGMA table_info(reservations)"))
    db.execute(RESERVATIONS_TABLE.format(name="reservations_migrating"))
    db.execute(f"INSERT INTO reservations_migrating ({columns}) SELECT {columns} FROM reservations")
    db.execute("DROP TABLE reservations")  # its indexes go with it; INDEXES rebuilds them
    db.execute("ALTER TABLE reservations_migrating RENAME TO reservations")


class Transaction:
    """``with Transaction(db):`` one ``BEGIN IMMEDIATE`` transaction, committed at the end or rolled
    back on an exception; with ``sweep`` (the default) lapsed holds are expired first."""

    def __init__(self, db: sqlite3.Connection, *, sweep: bool = True) -> None:
        self._db = db
        self._sweep = sweep

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        if self._sweep:
            # Lazy expiry: whatever this transaction reads or counts, a lapsed
            # hold is already ``expired`` in it. The status index keeps this cheap.
            self._db.execute(
                "UPDATE reservations SET status = 'expired' WHERE status = 'held' AND held_until <= ?", (now(),)
            )

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def decode_row(row: sqlite3.Row) -> dict[str, Any]:
    """A reservations row as the API answers it: traveller and details as JSON objects."""
    out = dict(row)
    out["traveller"] = json.loads(out["traveller"])
    out["details"] = json.loads(out["details"])
    return out
