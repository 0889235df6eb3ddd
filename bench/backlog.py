"""Rollbacks behind a backlog: do the undo queue and undo priority let a rollback finish soon behind 1000 new bookings?

Four ``flight-sold-out`` rollbacks, started together, on an idle queue and
right behind ``plan.backlog`` bookings on the same queue; each from its start
call and from its booking failure (the unwind). The escalated variant is a
prototype of raising a running workflow's priority: nothing here is shipped.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.common.v1 import Priority as PriorityProto
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflow.v1 import WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import UpdateWorkflowExecutionOptionsRequest
from temporalio.common import Priority

from bench.harness import Harness, bounded_gather, log
from bench.histories import unwind_ms
from bench.sides import OURS, QUEUES, request, settle, start_side
from bench.stats import pct
from trip.models import Mode, RetryOverrides, Scenario
from wiring.start import new_workflow_id
from workflows.booking import BookingWorkflow


async def rollback_under_backlog(h: Harness) -> dict[str, Any]:
    """Time to consistent of a flight-sold-out rollback started behind ``plan.backlog``
    new bookings, against the same on an idle queue, and its unwind (failure → closed)
    loaded against idle. Four variants, started together:

    - ``priority``: as shipped, undos on their own queue (``<queue>-undo``, a
      Worker with its own slots in the same worker process) at ``UNDO_PRIORITY_KEY`` (1);
    - ``default``: undos on their own queue at 3, as the bookings;
    - ``escalated``: as shipped, and as soon as the booking failure is in its
      history the whole workflow is raised to priority 1 with
      ``UpdateWorkflowExecutionOptions`` (server ≥ 1.30 re-issues the pending
      workflow task at the new priority). A prototype from the outside: what
      would ship is the failing activity (or the first undo) doing the same call;
    - ``started_high``: the whole workflow started at priority 1 (the upper bound:
      a booking cannot know at its start that it will roll back).
    """
    variants = ("priority", "default", "escalated", "started_high")

    async def rollback(name: str) -> tuple[float, str]:
        began = time.perf_counter()
        if name == "started_high":
            handle = await h.client.start_workflow(
                BookingWorkflow.run,
                request(Mode.PARALLEL, Scenario.FLIGHT_SOLD_OUT),
                id=new_workflow_id(),
                task_queue=QUEUES[OURS],
                priority=Priority(priority_key=1),
            )
        else:
            retry = RetryOverrides(undo_priority_key=3) if name == "default" else None
            handle = await start_side(h.client, OURS, Scenario.FLIGHT_SOLD_OUT, retry=retry)
        escalation = asyncio.ensure_future(escalate_on_failure(h, handle.id)) if name == "escalated" else None
        await settle(handle)
        if escalation is not None:
            await escalation
        return (time.perf_counter() - began) * 1000, handle.id

    async def together() -> dict[str, tuple[float, float]]:
        done = await asyncio.gather(*(rollback(n) for n in variants))
        return {n: (ms, await unwind_ms(h.client, wid)) for n, (ms, wid) in zip(variants, done, strict=True)}

    idle: dict[str, list[float]] = {n: [] for n in variants}
    loaded: dict[str, list[float]] = {n: [] for n in variants}
    idle_unwind: dict[str, list[float]] = {n: [] for n in variants}
    unwind: dict[str, list[float]] = {n: [] for n in variants}
    pending_at_start: list[int] = []
    for round_ in range(h.plan.backlog_rounds):
        for _ in range(3):
            for name, (ms, unwound) in (await together()).items():
                idle[name].append(ms)
                idle_unwind[name].append(unwound)
        handles = await bounded_gather(200, [start_side(h.client, OURS) for _ in range(h.plan.backlog)])
        results = [asyncio.ensure_future(settle(handle)) for handle in handles]
        pending_at_start.append(sum(not r.done() for r in results))
        for name, (ms, unwound) in (await together()).items():
            loaded[name].append(ms)
            unwind[name].append(unwound)
        await asyncio.gather(*results)
        latest = {n: (round(v[-1]), round(unwind[n][-1])) for n, v in loaded.items()}
        log(f"rollback under backlog, round {round_ + 1}: (from start, unwind) {latest} ms")
    out: dict[str, Any] = {"backlog": h.plan.backlog, "backlog_open_at_start": pending_at_start}
    for name in variants:
        out[name] = {
            "idle_p50_ms": pct(idle[name], 0.5),
            "loaded_ms": loaded[name],
            "loaded_p50_ms": pct(loaded[name], 0.5),
            "ratio": pct(loaded[name], 0.5) / pct(idle[name], 0.5),
            "idle_unwind_ms": idle_unwind[name],
            "idle_unwind_p50_ms": pct(idle_unwind[name], 0.5),
            "unwind_ms": unwind[name],
            "unwind_p50_ms": pct(unwind[name], 0.5),
            "unwind_ratio": pct(unwind[name], 0.5) / pct(idle_unwind[name], 0.5),
        }
    return out


async def escalate_on_failure(h: Harness, workflow_id: str, timeout: float = 600) -> None:
    """Raise the workflow to priority 1 once a booking activity has failed in its history."""
    handle = h.client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = (await handle.fetch_history()).events
        if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED for e in events):
            return  # closed before we saw the failure: nothing left to raise
        if any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED for e in events):
            await h.client.workflow_service.update_workflow_execution_options(
                UpdateWorkflowExecutionOptionsRequest(
                    namespace=h.client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=workflow_id),
                    workflow_execution_options=WorkflowExecutionOptions(priority=PriorityProto(priority_key=1)),
                    update_mask=FieldMask(paths=["priority"]),
                )
            )
            return
        await asyncio.sleep(0.01)  # the server's history: no event to await
