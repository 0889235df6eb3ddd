"""The sides the benchmark compares, and how to start and finish one saga of each.

``baseline`` is the seed-style workflow (``bench.seed_style``) on a worker with
the SDK's defaults; ``sequential`` is our workflow in sequential mode; ``ours``
is parallel mode as shipped. The floor workflows (``bench.floor``) run on the
baseline's worker. Every experiment starts its sagas through ``start_side`` so
that a side means the same workflow, queue and input everywhere.
"""

from __future__ import annotations

import time
import uuid
from datetime import date
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from bench.floor import EMPTY_WORKFLOW, LOCAL_WORKFLOW, NOOP_SEQUENTIAL_WORKFLOW, NOOP_WORKFLOW
from bench.seed_style import WORKFLOW_NAME as SEED_WORKFLOW
from trip.forms import booking_from_flat, demo_trip
from trip.models import BookingRequest, Mode, RetryOverrides, Scenario
from wiring.start import start_booking

BASELINE, SEQUENTIAL, OURS = "baseline", "sequential", "ours"
#: The baseline is the seed-style workflow (``bench.seed_style``) on a worker
#: with the SDK's defaults; ``sequential`` is our own workflow in sequential
#: mode, kept as a second comparison; ``ours`` is parallel mode as shipped.
SIDES = (BASELINE, SEQUENTIAL, OURS)
MODES = {BASELINE: Mode.SEQUENTIAL, SEQUENTIAL: Mode.SEQUENTIAL, OURS: Mode.PARALLEL}
QUEUES = {BASELINE: "bench-baseline", SEQUENTIAL: "bench-ours", OURS: "bench-ours"}
WORKERS = {BASELINE: "worker-baseline", SEQUENTIAL: "worker", OURS: "worker"}
#: The floor (``bench.floor``): an empty workflow, and the trip as three local
#: activities in one workflow task, both on the baseline's worker.
FLOOR_EMPTY, FLOOR_LOCAL = "floor_empty", "floor_local"
#: The same-shape no-op floor: our saga's shape (parallel, or sequential) with no-op activities.
FLOOR_NOOP, FLOOR_NOOP_SEQUENTIAL = "floor_noop", "floor_noop_sequential"
_FLOOR_WORKFLOWS = {
    FLOOR_LOCAL: LOCAL_WORKFLOW,
    FLOOR_NOOP: NOOP_WORKFLOW,
    FLOOR_NOOP_SEQUENTIAL: NOOP_SEQUENTIAL_WORKFLOW,
}
for _floor in (FLOOR_EMPTY, *_FLOOR_WORKFLOWS):
    QUEUES[_floor], WORKERS[_floor] = QUEUES[BASELINE], WORKERS[BASELINE]
#: Ours started without search attributes (so it never upserts one): a lever ``bench.levers`` measures.
OURS_NO_SEARCH_ATTRIBUTES = "ours_no_search_attributes"
MODES[OURS_NO_SEARCH_ATTRIBUTES] = Mode.PARALLEL
QUEUES[OURS_NO_SEARCH_ATTRIBUTES], WORKERS[OURS_NO_SEARCH_ATTRIBUTES] = QUEUES[OURS], WORKERS[OURS]


def request(mode: Mode, scenario: Scenario = Scenario.HAPPY, retry: RetryOverrides | None = None) -> BookingRequest:
    today = date.today()
    req = booking_from_flat({**demo_trip(today), "mode": mode.value, "scenario": scenario.value}, today=today)
    return req.model_copy(update={"retry": retry}) if retry else req


async def start_side(
    client: Client,
    side: str,
    scenario: Scenario = Scenario.HAPPY,
    *,
    queue: str | None = None,
    retry: RetryOverrides | None = None,
    eager: bool = False,
) -> WorkflowHandle[Any, Any]:
    queue = queue or QUEUES[side]
    if side == FLOOR_EMPTY:
        return await client.start_workflow(EMPTY_WORKFLOW, id=f"floor-{uuid.uuid4().hex}", task_queue=queue)
    if side in _FLOOR_WORKFLOWS:
        return await client.start_workflow(
            _FLOOR_WORKFLOWS[side], request(Mode.PARALLEL, scenario), id=f"floor-{uuid.uuid4().hex}", task_queue=queue
        )
    if side == BASELINE:
        return await client.start_workflow(
            SEED_WORKFLOW, request(Mode.SEQUENTIAL, scenario), id=f"seed-{uuid.uuid4().hex}", task_queue=queue
        )
    req = request(MODES[side], scenario, retry)
    return await start_booking(
        client,
        req,
        task_queue=queue,
        request_eager_start=eager,
        search_attributes=side != OURS_NO_SEARCH_ATTRIBUTES,
    )


async def settle(handle: WorkflowHandle[Any, Any]) -> None:
    try:
        await handle.result()
    except WorkflowFailureError:
        pass  # a rollback ends Failed once every undo is done: that is its end


async def one_saga(
    client: Client, side: str, scenario: Scenario = Scenario.HAPPY, *, queue: str | None = None, eager: bool = False
) -> tuple[float, str, bool]:
    """Seconds from the start call to the workflow's result (or failure)."""
    started = time.perf_counter()
    handle = await start_side(client, side, scenario, queue=queue, eager=eager)
    await settle(handle)
    return time.perf_counter() - started, handle.id, bool(getattr(handle, "__temporal_eagerly_started", False))
