"""The one place in the web app that owns the Temporal client.

Temporal's Python client is bound to the asyncio loop it was created on, and
Flask's async views make a new loop per request. So one background thread
runs one loop that owns one client; plain sync views submit coroutines to it
and wait with a timeout. The client connects lazily and reconnects after a
failure, so the app starts (and says "Temporal is unavailable") even when the
server is down.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from flask import current_app
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

T = TypeVar("T")

#: Where ``create_app`` keeps the app's portal, in ``app.extensions``.
PORTAL_KEY = "temporal_portal"


class TemporalUnavailable(Exception):
    """Temporal could not be reached (or did not answer in time)."""


#: CANCELLED is how the SDK's bridge reports a call's own ``rpc_timeout``
#: running out ("Timeout expired").
_UNAVAILABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}


class TemporalPortal:
    def __init__(self, connect: Callable[[], Awaitable[Client]], *, timeout: float = 10.0) -> None:
        self._connect = connect
        self.timeout = timeout
        self._client: Client | None = None
        self._lock: asyncio.Lock | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="temporal-portal", daemon=True)
        self._thread.start()

    async def client(self) -> Client:
        """The shared client; only call from coroutines run through ``call``."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await self._connect()
                except Exception as err:  # the SDK reports refused connections as RuntimeError
                    raise TemporalUnavailable(f"cannot connect to Temporal: {err}") from err
            return self._client

    def call(self, fn: Callable[[Client], Awaitable[T]], *, timeout: float | None = None) -> T:
        """Run ``fn(client)`` on the portal's loop and wait for its result."""

        async def run() -> T:
            client = await self.client()
            try:
                return await fn(client)
            except RPCError as err:
                if err.status in _UNAVAILABLE:
                    raise TemporalUnavailable(f"Temporal did not answer: {err.message}") from err
                raise

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        try:
            return future.result(timeout=timeout or self.timeout)
        except concurrent.futures.TimeoutError as err:
            future.cancel()
            raise TemporalUnavailable("Temporal did not answer in time") from err

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def current_portal() -> TemporalPortal:
    portal: TemporalPortal = current_app.extensions[PORTAL_KEY]
    return portal
