"""Operator sessions kept on the server, and the login throttle, in one small SQLite file.

Flask's session cookie is signed, so nobody can forge one, but nothing can
take a signed cookie back: a copy kept working for as long as the signature
was accepted (31 days), logout or not. So an operator's cookie now carries only
a random session id, and the row it names here says who and until when. Every
request looks the row up (``web.auth.load_user``); logout deletes it, so a
copied cookie stops working the moment its operator logs out, and a row past
its lifetime (``OPERATOR_SESSION_LIFETIME``) is refused the same way.

Refused logins are counted here too, per client address and per operator
name, over a sliding window; past either limit a login is answered 429 without
checking the password. The file is shared by every web process on the host
(``python -m web`` may run several behind one address), which an in-memory
limiter (Flask-Limiter's default storage included) would not be; several
hosts would need a shared store instead (see ``docs/web.md``).

One connection, behind a lock: every statement is a few microseconds, and the
web app's threads never hold it across anything slow. ``":memory:"`` keeps the
store in the process (the tests' apps).
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS operator_sessions (
    id         TEXT PRIMARY KEY,
    operator   TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    client TEXT NOT NULL,
    name   TEXT NOT NULL,
    at     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_client ON login_failures (client, at);
CREATE INDEX IF NOT EXISTS login_failures_name ON login_failures (name, at);
"""


@dataclass(frozen=True)
class Throttle:
    """Why logins are refused for now, and for how many more seconds at most."""

    reason: str
    retry_after_s: int


class SessionStore:
    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5)
        self._lock = threading.Lock()
        self._clock = clock
        with self._lock:
            if str(path) != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- sessions -----------------------------------------------------------

    def create(self, operator: str, lifetime_s: float) -> str:
        """A new session for ``operator``; returns the id its cookie carries."""
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._db.execute("DELETE FROM operator_sessions WHERE expires_at <= ?", (now,))
            self._db.execute(
                "INSERT INTO operator_sessions (id, operator, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (session_id, operator, now, now + lifetime_s),
            )
        return session_id

    def operator_of(self, session_id: str) -> str | None:
        """Who ``session_id`` belongs to, while it is live; None once revoked or expired."""
        with self._lock:
            row = self._db.execute(
                "SELECT operator FROM operator_sessions WHERE id = ? AND expires_at > ?", (session_id, self._clock())
            ).fetchone()
        return None if row is None else str(row[0])

    def revoke(self, session_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM operator_sessions WHERE id = ?", (session_id,))

    # --- the login throttle -------------------------------------------------

    def record_failure(self, *, client: str, name: str, window_s: float) -> None:
        now = self._clock()
        with self._lock:
            self._db.execute("DELETE FROM login_failures WHERE at <= ?", (now - window_s,))
            self._db.execute("INSERT INTO login_failures (client, name, at) VALUES (?, ?, ?)", (client, name, now))

    def throttled(self, *, client: str, name: str, per_client: int, per_name: int, window_s: float) -> Throttle | None:
        """Whether ``client`` or ``name`` has used up its refused logins in the last ``window_s``."""
        now = self._clock()
        since = now - window_s
        with self._lock:
            for column, value, limit, what in (
                ("client", client, per_client, "from this address"),
                ("name", name, per_name, "for this operator"),
            ):
                count, oldest = self._db.execute(
                    f"SELECT COUNT(*), MIN(at) FROM login_failures WHERE {column} = ? AND at > ?", (value, since)
                ).fetchone()
                if count >= limit:
                    # Sliding window: the oldest failure leaving it frees one more try.
                    return Throttle(f"too many refused logins {what}", max(1, int(oldest + window_s - now) + 1))
        return None

    def clear_failures(self, *, name: str) -> None:
        """A good login: the operator's own count starts again (an address's does not)."""
        with self._lock:
            self._db.execute("DELETE FROM login_failures WHERE name = ?", (name,))
