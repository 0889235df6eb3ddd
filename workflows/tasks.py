"""Two asyncio shapes the booking workflow needs, apart from what it books.

Workflow code: deterministic, no I/O. Both only arrange tasks the workflow
already started, on the workflow's own event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


async def run_to_end(work: Awaitable[T], on_cancel: Callable[[], None]) -> T:
    """Await ``work`` to its end even if cancelled, calling ``on_cancel`` for each cancel.

    Past the traveller's confirmation the ticket may already exist, so a cancel
    must not stop the saga half way: it is recorded, and the work goes on.
    """
    task = asyncio.ensure_future(work)
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            on_cancel()
    return task.result()


async def cancel_and_drain(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel the tasks still running and wait until every one has ended."""
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
