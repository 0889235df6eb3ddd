"""The provider's side of a confirmation that comes later: it sends the signed callback.

A booking answered ``202`` (``pending``) is confirmed by ``CallbackSender``
after ``delay_s``: it POSTs a ``trip.callbacks.CallbackBody`` to
``<base_url>/callbacks/<kind>``, signed with that kind's secret, with one
delivery id for every attempt of that callback (so the receiver can tell a
replay). It retries any answer but a 2xx, and an unreachable receiver, with
exponential backoff up to ``max_attempts``, as webhook senders do: a callback
that came early (the saga had not started waiting yet) gets a 409 and is
simply sent again. Every attempt is kept in the ledger
(``GET /callbacks/deliveries``).

When the receiver accepts, the reservation becomes ``active``. Before every
attempt the sender reads the reservation: if it was cancelled meanwhile (the
saga's deadline passed and its undo ran) the callback is not sent, and the
attempt is recorded ``abandoned``. Pending callbacks live in this process: a
restarted provider service sends none of them, and those steps time out and
are undone, which is the safe way to fail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from providers.ledger import Ledger
from trip.callbacks import CallbackBody, signed_headers
from trip.models import Kind

log = logging.getLogger("providers.callbacks")


@dataclass
class CallbackSender:
    ledger: Ledger
    #: The receiver's base URL (the web app); ``None``: callbacks cannot be sent.
    base_url: str | None
    secrets: dict[Kind, bytes]
    delay_s: float = 60.0
    max_attempts: int = 8
    first_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None

    def schedule(self, row: dict[str, Any]) -> None:
        """Confirm the pending ``row`` by callback, ``delay_s`` from now."""
        task = asyncio.get_running_loop().create_task(self._deliver(row))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _deliver(self, row: dict[str, Any]) -> None:
        delivery_id = uuid.uuid4().hex
        kind = Kind(row["kind"])
        body = CallbackBody(
            booking_id=row["booking_id"],
            idempotency_key=row["idempotency_key"],
            kind=kind,
            reference=row["reference"],
            confirmation=row["confirmation"],
        )
        raw = json.dumps(body.model_dump(mode="json"), separators=(",", ":")).encode()
        await asyncio.sleep(self.delay_s)
        backoff = self.first_backoff_s
        for attempt in range(1, self.max_attempts + 1):
            if self.ledger.status_of(row["idempotency_key"]) != "pending":
                self.ledger.record_delivery(
                    delivery_id=delivery_id,
                    attempt=attempt,
                    row=row,
                    http_status=None,
                    outcome="abandoned",
                    detail="the reservation is no longer pending (cancelled): nothing to confirm",
                )
                return
            status, detail = await self._post(kind, raw, delivery_id)
            delivered = status is not None and 200 <= status < 300
            outcome = "delivered" if delivered else "unreachable" if status is None else "refused"
            self.ledger.record_delivery(
                delivery_id=delivery_id, attempt=attempt, row=row, http_status=status, outcome=outcome, detail=detail
            )
            if delivered:
                self.ledger.confirm_pending(row["idempotency_key"])
                return
            log.info(
                "callback %s attempt %d for %s: %s %s", delivery_id, attempt, row["idempotency_key"], status, detail
            )
            await asyncio.sleep(backoff)
            backoff = min(self.max_backoff_s, backoff * 2)
        log.warning("callback %s for %s: gave up after %d attempts", delivery_id, row["idempotency_key"], attempt)

    async def _post(self, kind: Kind, raw: bytes, delivery_id: str) -> tuple[int | None, str]:
        secret = self.secrets.get(kind)
        if self.base_url is None or secret is None:
            return None, "no callback URL or no secret for this provider is configured"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        # Signed afresh for every attempt: a retry hours later is still inside the clock window.
        headers = signed_headers(secret, int(time.time()), raw, delivery_id)
        try:
            async with self._session.post(
                f"{self.base_url.rstrip('/')}/callbacks/{kind.value}", data=raw, headers=headers
            ) as response:
                return response.status, (await response.text())[:300]
        except (aiohttp.ClientError, TimeoutError) as err:
            return None, f"{type(err).__name__}: {err}"


SENDER = web.AppKey("callback_sender", CallbackSender)


def pending_answer(row: dict[str, Any]) -> dict[str, Any]:
    """The 202 answer: the row, with its reference, but no confirmation until the callback brings it."""
    return {**row, "confirmation": None}


async def list_deliveries(request: web.Request) -> web.Response:
    """``GET /callbacks/deliveries[?booking_id=...]``: every delivery attempt, for operators and tests."""
    return web.json_response(request.app[SENDER].ledger.deliveries(request.query.get("booking_id")))
