"""The providers' SQLite ledger: reservations, inventory and attempt counters.

Every write is one ``BEGIN IMMEDIATE`` transaction, so a request either
changes the ledger completely or not at all. The ledger never sleeps and never
does network I/O: the HTTP layer owns latency and fault injection.

Holds lapse lazily: there is no timer. Every transaction (and every read of
the ledger; ``providers.storage.Transaction``) first marks each ``held`` row whose ``held_until`` has passed as
``expired``, so no caller can ever see, confirm or count a lapsed hold. While
the service is stopped the file may still say ``held``; the first request
after a restart settles it.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from providers.storage import Transaction, connect, days_held, decode_row, now, request_hash, timestamp

_PREFIX = {"car": "CAR", "hotel": "HTL", "flight": "FLT"}


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
        # One connection, used only from the event loop's thread.
        self._db = connect(path)

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> Transaction:
        return Transaction(self._db)

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
        pending: bool = False,
    ) -> ReserveOutcome:
        """Book ``key``, or with ``hold_ttl_s`` place a hold that lapses after it.

        ``pending``: accept it but confirm later (status ``pending``, with the
        provider's own ``reference``); ``confirm_pending`` makes it ``active``
        once the callback is accepted. Like a hold, the first call decides.

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
                return ReserveOutcome(decode_row(existing), created=False)
            if self._db.execute("SELECT 1 FROM voided_keys WHERE idempotency_key = ?", (key,)).fetchone():
                raise LedgerConflict("ReservationVoided", f"key {key!r} was cancelled before this booking arrived")
            if force_sold_out:
                raise LedgerConflict("SoldOut", f"no {kind} left for {resource} on {first_day}")
            full = self._first_full_day(kind, resource, first_day, last_day)
            if full is not None:
                raise LedgerConflict("SoldOut", f"no {kind} left for {resource} on {full}")
            reservation_id = secrets.token_hex(8)
            confirmation = f"{_PREFIX[kind]}-{secrets.token_hex(3).upper()}"
            reference = f"{_PREFIX[kind]}-Q{secrets.token_hex(4).upper()}" if pending else None
            now = datetime.now(UTC)
            held_until = None if hold_ttl_s is None else timestamp(now + timedelta(seconds=hold_ttl_s))
            self._db.execute(
                "INSERT INTO reservations (idempotency_key, reservation_id, confirmation, kind, booking_id,"
                " resource, day, last_day, traveller, details, status, created_at, request_hash, held_until,"
                " reference) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    "pending" if pending else "active" if held_until is None else "held",
                    timestamp(now),
                    fingerprint,
                    held_until,
                    reference,
                ),
            )
            row = self._db.execute("SELECT * FROM reservations WHERE idempotency_key = ?", (key,)).fetchone()
        return ReserveOutcome(decode_row(row), created=True)

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
                    (key, kind, booking_id, now()),
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
                (now(), key),
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
                return decode_row(row), "already_confirmed"
            self._db.execute(
                "UPDATE reservations SET status = 'active', confirmed_at = ? WHERE idempotency_key = ?", (now(), key)
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
                return decode_row(row), "already_ticketed"
            if row["held_until"] is None:
                # Booked outright, not held: ticketing it would make a booking
                # the saga still expects to be able to cancel impossible to undo.
                raise LedgerConflict(
                    "InvalidBooking",
                    f"the flight under key {key!r} was booked outright, not held; only a held flight is ticketed",
                )
            number = f"TKT-{secrets.randbelow(10**10):010d}"
            self._db.execute(
                "UPDATE reservations SET status = 'active', confirmed_at = COALESCE(confirmed_at, ?),"
                " ticket_number = ? WHERE idempotency_key = ?",
                (now(), number, key),
            )
            return self._get(key), "ticketed"

    def refuse_foreign_key(self, *, kind: str, key: str, booking_id: str, op: str) -> None:
        """Refuse (``LedgerConflict``) a key that is not ``booking_id``'s ``kind`` key; writes nothing.

        Called before any injected fault, outage or attempt count, so a forged
        request cannot take a real booking's faults. ``op`` is ``reserve``,
        ``cancel`` or ``finalize``: a cancel of a key nothing was booked under
        must also be the key the saga would send, and a confirmation or a
        ticket needs something held (the same rules ``cancel`` and ``_holding``
        apply inside their transactions).
        """
        row = self._db.execute("SELECT kind, booking_id FROM reservations WHERE idempotency_key = ?", (key,)).fetchone()
        if row is None:
            row = self._db.execute(
                "SELECT kind, booking_id FROM voided_keys WHERE idempotency_key = ?", (key,)
            ).fetchone()
            if row is None and op == "finalize":
                raise LedgerConflict("InvalidBooking", f"nothing is held under key {key!r}")
            if row is None and op == "cancel" and key not in (f"{booking_id}:{kind}", booking_id):
                row = {"kind": None, "booking_id": None}
        if row is not None and (row["kind"], row["booking_id"]) != (kind, booking_id):
            raise LedgerConflict(
                "InvalidBooking", f"idempotency key {key!r} is not the {kind} key of booking {booking_id!r}"
            )

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
        return decode_row(self._db.execute("SELECT * FROM reservations WHERE idempotency_key = ?", (key,)).fetchone())

    def confirm_pending(self, key: str) -> bool:
        """The receiver accepted the callback: the pending reservation becomes ``active``.

        False (nothing changes) unless it is still pending: cancelled meanwhile, say.
        """
        with self._tx():
            changed = self._db.execute(
                "UPDATE reservations SET status = 'active', confirmed_at = ? WHERE idempotency_key = ?"
                " AND status = 'pending'",
                (now(), key),
            ).rowcount
        return changed == 1

    def status_of(self, key: str) -> str | None:
        row = self._db.execute("SELECT status FROM reservations WHERE idempotency_key = ?", (key,)).fetchone()
        return None if row is None else str(row["status"])

    def record_delivery(
        self,
        *,
        delivery_id: str,
        attempt: int,
        row: dict[str, Any],
        http_status: int | None,
        outcome: str,
        detail: str | None = None,
    ) -> None:
        """Keep one attempt to deliver ``row``'s confirmation callback (``GET /callbacks/deliveries``)."""
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO callback_deliveries (delivery_id, attempt, idempotency_key, booking_id, kind,"
                " at, http_status, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    delivery_id,
                    attempt,
                    row["idempotency_key"],
                    row["booking_id"],
                    row["kind"],
                    now(),
                    http_status,
                    outcome,
                    (detail or "")[:500] or None,
                ),
            )

    def deliveries(self, booking_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM callback_deliveries"
        args: tuple[str, ...] = ()
        if booking_id is not None:
            sql, args = sql + " WHERE booking_id = ?", (booking_id,)
        return [dict(r) for r in self._db.execute(sql + " ORDER BY at, attempt", args)]

    def lift_outage(self, *, booking_id: str, kind: str) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO lifted_outages (booking_id, kind, lifted_at) VALUES (?, ?, ?)",
                (booking_id, kind, now()),
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
        for offset in range((end - day).days + 1):
            # Counted, never stepped past ``end``: the day after 9999-12-31 does not exist.
            current = (day + timedelta(days=offset)).isoformat()
            if self._available(kind, resource, current) <= 0:
                return current
        return None

    def _available(self, kind: str, resource: str, day: str) -> int:
        row = self._db.execute(
            "SELECT capacity FROM inventory WHERE kind = ? AND resource = ? AND day = ?", (kind, resource, day)
        ).fetchone()
        capacity = row["capacity"] if row else self.default_capacity
        (held,) = self._db.execute(
            "SELECT COUNT(*) FROM reservations WHERE kind = ? AND resource = ?"
            " AND status IN ('held', 'active', 'pending')"
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
        return [decode_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many reservations are in each status (lapsed holds settled first)."""
        with self._tx():
            rows = self._db.execute("SELECT status, COUNT(*) AS n FROM reservations GROUP BY status").fetchall()
        return {row["status"]: int(row["n"]) for row in rows}
