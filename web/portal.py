"""The one place in the web app that owns the Temporal client.

Temporal's Python client is bound to the event loop it was created on, and
Flask's async views make a new loop per request. So anyio's blocking portal
runs one event loop in one background thread, and that loop owns one client;
plain sync views submit coroutines to it and wait with a timeout. The client
connects lazily and reconnects after a failure, so the app starts (and says
"Temporal is unavailable") even when the server is down.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal
from flask import current_app
from temporalio.client import Client

from wiring.client import ConnectFailed, is_unreachable

T = TypeVar("T")

#: Where ``create_app`` keeps the app's portal, in ``app.extensions``.
PORTAL_KEY = "temporal_portal"


class TemporalUnavailable(Exception):
    """Temporal could not be reached (or did not answer in time)."""


class TemporalPortal:
    def __init__(self, connect: Callable[[], Awaitable[Client]], *, timeout: float = 10.0) -> None:
        self._connect = connect
        self.timeout = timeout
        self._client: Client | None = None
        self._lock: asyncio.Lock | None = None
        self._running: AbstractContextManager[BlockingPortal] | None = start_blocking_portal(
            "asyncio", name="temporal-portal"
        )
        self._portal = self._running.__enter__()
        # A portal nobody closed would otherwise be closed by the interpreter's
        # finalization, when its loop thread can no longer run, and the exit hangs.
        atexit.register(self.close)

    async def client(self) -> Client:
        """The shared client; only call from coroutines run through ``call``."""
        if self._lock is None:  # made on the portal's loop, which is the only one that uses it
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await self._connect()
                except ConnectFailed as err:  # one line naming the cause
                    raise TemporalUnavailable(str(err)) from err
                except Exception as err:
                    raise TemporalUnavailable(f"cannot connect to Temporal: {err}") from err
            return self._client

    def call(self, fn: Callable[[Client], Awaitable[T]], *, timeout: float | None = None) -> T:
        """Run ``fn(client)`` on the portal's loop and wait for its result."""

        async def run() -> T:
            client = await self.client()
            try:
                return await fn(client)
            except Exception as err:
                if is_unreachable(err):
                    raise TemporalUnavailable(f"Temporal did not answer: {err}") from err
                raise

        future = self._portal.start_task_soon(run)
        try:
            return future.result(timeout=timeout or self.timeout)
        except concurrent.futures.TimeoutError as err:
            future.cancel()  # the portal cancels the task on its loop
            raise TemporalUnavailable("Temporal did not answer in time") from err

    def close(self) -> None:
        """Stop the portal's loop, cancelling whatever still runs on it (a call stuck
        on a hung server must not hold up shutdown), and join its thread."""
        running, self._running = self._running, None
        if running is None:
            return
        atexit.unregister(self.close)
        self._portal.call(self._portal.stop, True)
        running.__exit__(None, None, None)


def current_portal() -> TemporalPortal:
    portal: TemporalPortal = current_app.extensions[PORTAL_KEY]
    return portal
