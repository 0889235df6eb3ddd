"""The form's submit: what it could wait for, and what each costs, on our worker.

Plain start (what ``POST /bookings`` does), Update-with-Start of the ``holds``
Update, and start-then-result, interleaved. It decides whether the form should
answer with the outcome or redirect to the live status page at once.
"""

from __future__ import annotations

import time
from typing import Any

from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from bench.harness import Harness, interleaved
from bench.sides import OURS, QUEUES, one_saga, request
from bench.stats import summary
from trip import UPDATE_HOLDS
from trip.models import Mode
from trip.status import BookingStatus
from wiring.start import new_workflow_id, start_booking
from workflows.booking import BookingWorkflow


async def form_start(h: Harness) -> dict[str, Any]:
    """Client-side time of each way the submit could wait: ``start`` (what it does: the start
    is accepted), ``update_with_start`` (Update-with-Start of the ``holds`` update: the
    bookings are held or the unwind has begun) and ``start_then_result`` (start, then wait
    for the workflow's result)."""

    async def start() -> float:
        began = time.perf_counter()
        await start_booking(h.client, request(Mode.PARALLEL), task_queue=QUEUES[OURS])
        return (time.perf_counter() - began) * 1000

    async def update_with_start() -> float:
        req = request(Mode.PARALLEL)
        began = time.perf_counter()
        operation = WithStartWorkflowOperation(
            BookingWorkflow.run,
            req,
            id=new_workflow_id(),
            task_queue=QUEUES[OURS],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        status = await h.client.execute_update_with_start_workflow(
            UPDATE_HOLDS, start_workflow_operation=operation, result_type=BookingStatus
        )
        assert len(status.confirmations) == 3, status
        return (time.perf_counter() - began) * 1000

    async def start_then_result() -> float:
        seconds, _, _ = await one_saga(h.client, OURS)
        return seconds * 1000

    samples = await interleaved(
        h.plan.form_runs,
        {"start": start, "update_with_start": update_with_start, "start_then_result": start_then_result},
    )
    return {name: {**summary(values), "samples_ms": values} for name, values in samples.items()}
