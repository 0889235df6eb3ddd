"""A booking's status as its workflow reports it, with what only the server knows merged in.

Workflow code cannot see an activity's attempts until it ends; the server's
pending-activity list can. So the ``status`` query's answer is merged here with
the live attempt counts of steps still running, and with which of their
activities an operator paused. Never import this from workflow code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client, WorkflowHandle

from saga import StepState
from trip.status import BookingStatus
from trip.steps import saga_step_of, undone_by
from wiring.executions import Execution
from wiring.paused_status import describe_execution, query_status


async def fetch_status(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    *,
    rpc_timeout: timedelta | None = None,
    execution: Execution | None = None,
) -> BookingStatus:
    """The ``status`` query, with live attempt counts of steps still running
    and which of their activities an operator paused.

    ``client`` is the one ``handle`` came from. A query waits for a worker to
    answer; ``rpc_timeout`` bounds that wait. Raises ``WorkflowPaused`` while
    the whole workflow is paused. A caller that has just described the run
    passes ``execution``, saving a second describe per status poll.
    """
    if execution is None:
        execution = await describe_execution(client, handle.id, handle.run_id, rpc_timeout=rpc_timeout)
    status = await query_status(client, handle, execution, rpc_timeout=rpc_timeout)
    return merge_pending(status, execution.pending_activities)


def merge_pending(status: BookingStatus, pending_activities: tuple[PendingActivityInfo, ...]) -> BookingStatus:
    """``status`` with the attempts and pauses of its running steps' pending activities."""
    running = {s.name for s in status.steps if s.state in (StepState.RUNNING, StepState.COMPENSATING)}
    if not running:
        return status
    live: dict[str, PendingActivityInfo] = {}
    for pending in pending_activities:
        name = pending.activity_type.name
        step = saga_step_of(name)
        if step in running and pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_UNSPECIFIED:
            live[f"{'undo:' if undone_by(name) is not None else ''}{step}"] = pending
    steps = []
    for s in status.steps:
        if s.state is StepState.RUNNING and s.name in live:
            pending = live[s.name]
            s = s.model_copy(update={"attempts": pending.attempt, "paused": pending.paused})
        elif s.state is StepState.COMPENSATING and f"undo:{s.name}" in live:
            pending = live[f"undo:{s.name}"]
            s = s.model_copy(update={"undo_attempts": pending.attempt, "paused": pending.paused})
        steps.append(s)
    return status.model_copy(update={"steps": steps})
