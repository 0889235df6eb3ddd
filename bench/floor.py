"""The physical floor the benchmark's targets are judged against: how close any design could get.

Two workflows that no booking design can beat on this machine, run on the
seed-style baseline's worker (SDK defaults) so that only the workflow differs:

- ``FloorEmpty`` does nothing: start → result in one workflow task. No saga
  that calls anything can be faster, nor cost the server less per run.
- ``FloorLocal`` makes the trip's three provider calls as *local* activities,
  all at once, and on a failure undoes all three at once, also locally: the
  whole saga in one workflow task. It is the best a design could do while still
  calling the providers (at the price of the per-attempt activity events that
  operators read in the Web UI).
- ``FloorNoop`` has our saga's shape with nothing inside it: one round of three
  parallel activities that do nothing (``floor_noop``, given the same inputs as
  the bookings), in two workflow tasks. What ours costs above it is our own
  overhead: HTTP, the provider service, conversions, interceptors, upserts.
  ``FloorNoopSequential`` is the same three one after another (the sequential
  designs' shape, four workflow tasks).

Never used outside the benchmark; never shipped as a booking workflow.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from bench.activity_inputs import REFUSALS_END_A_STEP, cancel_request, reserve_request
    from trip.models import BookingRequest, ReserveRequest
    from trip.steps import STEPS

EMPTY_WORKFLOW = "FloorEmpty"
LOCAL_WORKFLOW = "FloorLocal"
NOOP_WORKFLOW = "FloorNoop"
NOOP_SEQUENTIAL_WORKFLOW = "FloorNoopSequential"
NOOP_ACTIVITY = "floor_noop"
TIMEOUT = timedelta(seconds=10)


@workflow.defn(name=EMPTY_WORKFLOW)
class FloorEmpty:
    @workflow.run
    async def run(self) -> str:
        return "done"


@workflow.defn(name=LOCAL_WORKFLOW)
class FloorLocal:
    @workflow.run
    async def run(self, req: BookingRequest) -> str:
        booking_id = workflow.info().workflow_id
        booked = await asyncio.gather(
            *(
                workflow.execute_local_activity(
                    s.book,
                    reserve_request(req, booking_id, s.kind),
                    start_to_close_timeout=TIMEOUT,
                    retry_policy=REFUSALS_END_A_STEP,
                )
                for s in STEPS
            ),
            return_exceptions=True,
        )
        if not any(isinstance(b, BaseException) for b in booked):
            return "Voyage booked"
        # Undos are idempotent at the providers: undo all three at once.
        await asyncio.gather(
            *(
                workflow.execute_local_activity(
                    s.undo,
                    cancel_request(req, booking_id, s.kind),
                    start_to_close_timeout=TIMEOUT,
                )
                for s in STEPS
            ),
            return_exceptions=True,
        )
        return "Voyage cancelled"


@activity.defn(name=NOOP_ACTIVITY)
async def floor_noop(req: ReserveRequest) -> None:
    """A booking activity's input, decoded, and nothing done with it."""


@workflow.defn(name=NOOP_WORKFLOW)
class FloorNoop:
    @workflow.run
    async def run(self, req: BookingRequest) -> str:
        booking_id = workflow.info().workflow_id
        await asyncio.gather(
            *(
                workflow.execute_activity(
                    floor_noop, reserve_request(req, booking_id, s.kind), start_to_close_timeout=TIMEOUT
                )
                for s in STEPS
            )
        )
        return "Voyage booked"


@workflow.defn(name=NOOP_SEQUENTIAL_WORKFLOW)
class FloorNoopSequential:
    @workflow.run
    async def run(self, req: BookingRequest) -> str:
        booking_id = workflow.info().workflow_id
        for s in STEPS:
            await workflow.execute_activity(
                floor_noop, reserve_request(req, booking_id, s.kind), start_to_close_timeout=TIMEOUT
            )
        return "Voyage booked"
