"""Later builds of the booking workflow, for the Worker Versioning tests only.

Users never run these: each one is the shipped ``BookingWorkflow`` changed the
way a real deploy might change it, under the same workflow type name, so that a
test can put two builds side by side on one task queue:

* ``v2`` checks the fare (one extra activity) before it books anything. A v1
  history has no such activity, so v2 cannot replay it: only versioning keeps
  v1's runs on v1.
* ``v2-patched`` is the same change behind ``workflow.patched``, the way the
  project ships changes today: it replays v1's histories, so a waiting v1 run
  can be moved onto it.
* ``v3`` is v2 with two bugs. A booking made one step after another raises
  once the car is booked: its first workflow task completed (the run is
  pinned to v3), every later one fails. A parallel booking raises at once:
  no task of it ever completes, so it is pinned to no build yet.
* ``v3-fixed`` is v3 with the faulty line removed, which is v2's code: it
  replays v3's histories up to the bug and goes on.

Workflow code: deterministic, no I/O. Imported by the versioned test worker
(``tests.system.versioned_worker``) and by the tests, which read the names.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from trip import WORKFLOW_TYPE
    from trip.models import BookingRequest, Kind, Mode, Reservation
    from trip.status import BookingResult
    from workflows.booking import BookingWorkflow

#: The activity v2 adds before ``book_car``; only the v2-like workers register it.
CHECK_FARE = "check_fare"
#: ``workflow.patched`` id of the compatible variant's change.
PATCH_CHECK_FARE = "check-fare"
#: What the v3 bug raises, so a test can find it in a workflow task failure.
V3_BUG = "v3 bug: cannot read the car reservation"


async def _check_fare() -> None:
    await workflow.execute_activity(
        CHECK_FARE, workflow.info().workflow_id, start_to_close_timeout=timedelta(seconds=10), result_type=str
    )


@workflow.defn(name=WORKFLOW_TYPE, versioning_behavior=VersioningBehavior.PINNED)
class BookingWorkflowV2(BookingWorkflow):
    """One extra activity before any booking: not replay-compatible with v1."""

    @workflow.run
    async def run(self, req: BookingRequest) -> BookingResult:
        await _check_fare()
        return await super().run(req)


@workflow.defn(name=WORKFLOW_TYPE, versioning_behavior=VersioningBehavior.PINNED)
class BookingWorkflowV2Patched(BookingWorkflow):
    """The v2 change behind ``workflow.patched``: v1's runs replay and skip it."""

    @workflow.run
    async def run(self, req: BookingRequest) -> BookingResult:
        if workflow.patched(PATCH_CHECK_FARE):
            await _check_fare()
        return await super().run(req)


@workflow.defn(name=WORKFLOW_TYPE, versioning_behavior=VersioningBehavior.PINNED)
class BookingWorkflowV3(BookingWorkflowV2):
    """v2 with bugs in its workflow code: it raises at once (parallel) or once the car is booked."""

    @workflow.run
    async def run(self, req: BookingRequest) -> BookingResult:
        if req.mode is Mode.PARALLEL:
            # Not a Temporal failure: the SDK fails the workflow task, not the run.
            raise RuntimeError(V3_BUG)
        return await super().run(req)

    async def _book(self, kind: Kind) -> Reservation:
        reservation = await super()._book(kind)
        if kind is Kind.CAR:
            # Not a Temporal failure: the SDK fails the workflow task, not the run.
            raise RuntimeError(V3_BUG)
        return reservation


#: ``--variant`` of the versioned test worker -> the workflow class it registers
#: (``v1``: the shipped one). ``v3-fixed`` is v3 without the faulty line: v2's code.
VARIANTS: dict[str, type[BookingWorkflow]] = {
    "v1": BookingWorkflow,
    "v2": BookingWorkflowV2,
    "v2-patched": BookingWorkflowV2Patched,
    "v3": BookingWorkflowV3,
    "v3-fixed": BookingWorkflowV2,
}
