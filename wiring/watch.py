"""Following a booking from a terminal: its step lines while it runs, and its report when it ends.

``run_workflow.py`` prints what this module builds; nothing here parses
arguments or chooses an exit code. Never import this from workflow code.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from saga import StepKind, StepState
from trip.status import BookingStatus, OutstandingStep, SagaStatus, StepView
from wiring.executions import WorkflowPaused
from wiring.live_status import fetch_status
from wiring.outcome import Outcome, await_outcome

#: How often the step lines are refreshed.
POLL_S = 0.25
#: One status poll may take this long before the poll is skipped (the server is down).
STATUS_POLL_TIMEOUT_S = 3.0
#: States whose line shows the step's own error.
_SHOWS_ERROR = (StepState.FAILED, StepState.COMPENSATING, StepState.COMPENSATED, StepState.COMPENSATION_FAILED)
_STATE_WIDTH = max(len(state.value) for state in StepState)


def step_lines(steps: Sequence[StepView]) -> dict[str, str]:
    """One text line per step, its columns as wide as the longest name and state."""
    width = max((len(s.name) for s in steps), default=0)
    lines = {}
    for step in steps:
        extra = []
        if step.attempts > 1:
            extra.append(f"attempt {step.attempts}")
        if step.confirmation:
            extra.append(step.confirmation)
        if step.error and step.state in _SHOWS_ERROR:
            extra.append(f"{step.error_type}: {step.error}")
        if step.undo_error:
            extra.append(f"undo: {step.undo_error}")
        lines[step.name] = f"  {step.name:{width}} {step.state.value:{_STATE_WIDTH}} {' · '.join(extra)}".rstrip()
    return lines


def needs_attention(status: BookingStatus) -> Outcome:
    """The outcome a watcher reports for a booking that waits for an operator (it stays open)."""
    held = ", ".join(status.outstanding)
    return Outcome(
        SagaStatus.NEEDS_ATTENTION,
        error_type="NeedsAttention",
        error_message=(
            f"past the point of no return, a step is not done; the booking waits for an operator: {held}"
            if status.past_pivot
            else f"an undo is stuck; the booking waits for an operator. Still held: {held}"
        ),
    )


def awaiting_undo_approval(status: BookingStatus) -> Outcome:
    """The outcome a watcher reports for a booking whose costly undo waits for a decision (it stays open)."""
    held = "; ".join(f"{a.step} ({a.reason})" for a in status.undo_approvals if a.decision is None)
    return Outcome(
        SagaStatus.AWAITING_UNDO_APPROVAL,
        error_type="AwaitingUndoApproval",
        error_message=f"an undo costs money; the booking waits for an operator's approve_undo or keep: {held}",
    )


async def watch(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    say: Callable[[str], None] | None,
    wait_timeout: float | None = None,
) -> tuple[Outcome, BookingStatus | None]:
    """Pass each changed step line to ``say`` until the workflow closes or needs an operator; return its outcome.

    ``say=None``: follow silently. Raises ``TemporalUnreachable`` once Temporal
    has not answered for ``wait_timeout`` seconds.
    """
    result_task = asyncio.ensure_future(await_outcome(client, handle, outage_timeout=wait_timeout))
    seen: dict[str, str] = {}
    was_paused = False
    status: BookingStatus | None = None
    try:
        while True:
            done = result_task.done()
            try:
                status = await asyncio.wait_for(
                    fetch_status(client, handle, rpc_timeout=timedelta(seconds=STATUS_POLL_TIMEOUT_S)),
                    STATUS_POLL_TIMEOUT_S,
                )
            except (TimeoutError, RPCError):
                pass  # no worker yet, or the server is down: keep the last status seen
            except WorkflowPaused as paused:
                status = None  # `temporal workflow pause`: no query is answered until it is unpaused
                if say and not was_paused:
                    say(f"  Paused in Temporal: {paused.execution.pause_reason}")
                was_paused = True
            else:
                if say and was_paused:
                    say("  Unpaused in Temporal")
                was_paused = False
            if status is not None and say:
                for name, line in step_lines(status.steps).items():
                    if seen.get(name) != line:
                        seen[name] = line
                        say(line)
                for wait in status.waiting:
                    if seen.get(f"waiting {wait.step}") is None:
                        seen[f"waiting {wait.step}"] = line = f"  {wait.text()}"
                        say(line)
            if done:
                return result_task.result(), status
            if status is not None and status.status is SagaStatus.NEEDS_ATTENTION:
                return needs_attention(status), status
            if status is not None and status.status is SagaStatus.AWAITING_UNDO_APPROVAL:
                return awaiting_undo_approval(status), status
            await asyncio.wait({result_task}, timeout=POLL_S)
    finally:
        result_task.cancel()


def outstanding_json(step: OutstandingStep) -> dict[str, Any]:
    """One outstanding step, with only the figures that describe it.

    Before the pivot the undo is what is stuck (``undo_*``); after it, the step
    itself (``attempts``, ``error*``). The other kind's fields keep their
    defaults (0 attempts, no error), which would read as facts, so they are left out.
    """
    data = step.model_dump(mode="json")
    if step.kind is StepKind.RETRIABLE:
        drop = ("undo_attempts", "undo_error_type", "undo_error")
    else:
        drop = ("attempts", "error_type", "error")
    return {key: value for key, value in data.items() if key not in drop}


def report(workflow_id: str, url: str | None, outcome: Outcome, status: BookingStatus | None) -> dict[str, Any]:
    """The ``--json`` object of a booking that was followed to its outcome."""
    out: dict[str, Any] = {
        "workflow_id": workflow_id,
        "status": outcome.status.value if outcome.status else (outcome.execution_status or "UNKNOWN"),
        "steps": [
            {
                "name": s.name,
                "state": s.state.value,
                "attempts": s.attempts,
                "confirmation": s.confirmation,
                "undo_attempts": s.undo_attempts,
            }
            for s in (status.steps if status else [])
        ],
        "web_ui_url": url,
    }
    if status is not None and status.attention is not None:
        out["outstanding"] = [outstanding_json(o) for o in status.attention.outstanding]
        out["attention_deadline"] = status.attention.deadline.isoformat()
    if status is not None and status.confirmation is not None:
        out["confirmation_deadline"] = status.confirmation.deadline.isoformat()
        out["decision"] = status.confirmation.decision
    if status is not None and status.ticket is not None:
        out["ticket"] = status.ticket
    if status is not None and status.undo_approvals:
        out["undo_approvals"] = [a.model_dump(mode="json") for a in status.undo_approvals]
    if status is not None and (status.waiting or status.waited):
        # Steps whose provider answered 202: the reference, since, deadline and how the wait ended.
        out["waiting"] = [w.model_dump(mode="json") for w in status.waiting]
        out["waited"] = [w.model_dump(mode="json") for w in status.waited]
    if outcome.result is not None:
        out["confirmations"] = outcome.result.confirmations
    else:
        out["error"] = {"type": outcome.error_type, "message": outcome.error_message, "details": outcome.error_details}
    return out


def python_command(script: str) -> str:
    """How to run ``script`` with this interpreter, as a user would type it here.

    The interpreter relative to the working directory when it lives below it
    (``.venv/bin/python``), so a hint names the project's environment, never
    whichever ``python`` is first on the PATH.
    """
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd() + os.sep) else sys.executable
    return f"{python} {script}"
