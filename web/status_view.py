"""What a booking's page shows: the booking as one view, loaded from Temporal,
and the words the page writes for it (time left, how an undo went).

It loads a booking and phrases it; it never renders a template and never
sends anything to a workflow (``web.status`` does both).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import abort, current_app
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from saga import StepState
from trip.models import WORKFLOW_ID_RE
from trip.status import TERMINAL, BookingStatus, SagaStatus, StepView
from web.portal import current_portal
from wiring.client import web_ui_url
from wiring.executions import WorkflowPaused
from wiring.live_status import fetch_status
from wiring.outcome import Outcome, await_outcome
from wiring.paused_status import describe_execution


class BookingNotFound(Exception):
    pass


@dataclass(frozen=True)
class BookingView:
    workflow_id: str
    namespace: str
    saga_status: str
    closed: bool
    temporal_status: str
    start_time: datetime | None
    status: BookingStatus | None
    outcome: Outcome | None
    ui_base: str
    #: Why step details are missing, if they are.
    note: str | None = None
    #: Paused by ``temporal workflow pause``: why, else None.
    pause_reason: str | None = None

    @property
    def web_ui_url(self) -> str:
        return web_ui_url(self.workflow_id, self.namespace, base=self.ui_base)

    @property
    def settled(self) -> bool:
        """Nothing is left to cancel: the run has closed, or its saga reached an end
        and the run is about to close (its status query says so a moment before)."""
        return self.closed or self.saga_status in {s.value for s in TERMINAL}

    @property
    def ticket(self) -> str | None:
        """The flight's ticket number (hold and confirm), from the query or the run's result."""
        if self.status is not None and self.status.ticket:
            return self.status.ticket
        if self.outcome is not None and self.outcome.result is not None:
            return self.outcome.result.ticket
        return None

    @property
    def confirm_remaining_s(self) -> float | None:
        """Seconds left to confirm a held trip, by the server's clock; None unless it waits.

        A closed run waits for nobody, even when its status query (replayed to
        the last state, as after a terminate) still says it is awaiting an answer.
        """
        confirmation = self.status.confirmation if self.status else None
        if self.closed or confirmation is None or confirmation.decision is not None:
            return None
        deadline = confirmation.deadline
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=UTC)
        return max(0.0, (deadline - datetime.now(UTC)).total_seconds())

    @property
    def undo_started(self) -> bool:
        """Has any step's undo begun? Until then the page has no undo column to show."""
        return self.status is not None and any(undo_text(step) for step in self.status.steps)

    @property
    def undo_plan(self) -> list[str]:
        """What a failure now would undo: only while that can still happen (open, before the pivot)."""
        if self.closed or self.status is None or self.status.past_pivot:
            return []
        return self.status.compensation_plan

    def to_json(self) -> dict[str, Any]:
        status = self.status
        error = None
        if self.outcome is not None and self.outcome.error_type:
            error = {"type": self.outcome.error_type, "message": self.outcome.error_message}
        return {
            "workflow_id": self.workflow_id,
            "status": self.saga_status,
            "closed": self.closed,
            "temporal_status": self.temporal_status,
            "traveller": status.traveller if status else None,
            "mode": status.mode.value if status else None,
            "scenario": status.scenario.value if status else None,
            "steps": [s.model_dump(mode="json") for s in status.steps] if status else [],
            "compensation_plan": status.compensation_plan if status else [],
            "failure": status.failure.model_dump(mode="json") if status and status.failure else None,
            "confirmations": status.confirmations if status else {},
            "outstanding": status.outstanding if status else [],
            "attention": status.attention.model_dump(mode="json") if status and status.attention else None,
            "audit": [a.model_dump(mode="json") for a in status.audit] if status else [],
            # Hold and confirm: ``remaining_s`` by the server's clock, so a reader need not trust its own.
            "confirmation": (
                {**status.confirmation.model_dump(mode="json"), "remaining_s": self.confirm_remaining_s}
                if status and status.confirmation
                else None
            ),
            # Steps whose provider answered 202 and will confirm by callback.
            "waiting": [w.model_dump(mode="json") for w in status.waiting] if status else [],
            "past_pivot": status.past_pivot if status else False,
            "ticket": self.ticket,
            "undo_approvals": [a.model_dump(mode="json") for a in status.undo_approvals] if status else [],
            "error": error,
            "note": self.note,
            "paused": self.pause_reason is not None,
            "pause_reason": self.pause_reason,
            "web_ui_url": self.web_ui_url,
        }


async def _load(client: Client, workflow_id: str, ui_base: str, query_timeout: timedelta) -> BookingView:
    # Runs on the portal's loop thread: no Flask context here, so settings come in as arguments.
    handle = client.get_workflow_handle(workflow_id)
    try:
        execution = await describe_execution(client, workflow_id, rpc_timeout=query_timeout)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise BookingNotFound(workflow_id) from err
        raise
    closed = execution.closed
    status: BookingStatus | None = None
    note = None
    try:
        status = await fetch_status(client, handle, rpc_timeout=query_timeout, execution=execution)
    except WorkflowPaused as paused:
        execution = paused.execution
        note = f"Paused in Temporal ({execution.pause_reason}): step details come back once it is unpaused."
    except (RPCError, WorkflowQueryFailedError):
        note = "Step details are unavailable: no worker is answering queries for this booking right now."
    outcome = await await_outcome(client, handle) if closed else None
    if execution.closed_from_outside:
        # Terminated or timed out: the query replays to the saga's last state,
        # RUNNING or COMPENSATING, which would read as "still going" forever.
        saga_status = execution.status
    elif outcome is not None and outcome.status is not None:
        saga_status = outcome.status.value
    elif status is not None and (not closed or status.status in TERMINAL):
        saga_status = status.status.value
    elif closed:
        saga_status = execution.status
    else:
        saga_status = execution.booking_status or SagaStatus.RUNNING.value
    return BookingView(
        workflow_id=workflow_id,
        namespace=client.namespace,
        ui_base=ui_base,
        saga_status=saga_status,
        closed=closed,
        temporal_status=execution.status,
        start_time=execution.start_time,
        status=status,
        outcome=outcome,
        note=note,
        pause_reason=execution.pause_reason if execution.paused else None,
    )


def load_booking(workflow_id: str) -> BookingView:
    if not WORKFLOW_ID_RE.match(workflow_id):
        abort(404)
    try:
        config = current_app.config
        timeout = timedelta(seconds=config["QUERY_TIMEOUT"])
        return current_portal().call(
            lambda client: _load(client, workflow_id, config["TEMPORAL_UI_URL"], timeout),
            timeout=config["STATUS_TIMEOUT"],
        )
    except BookingNotFound:
        abort(404)


def remaining_text(seconds: float) -> str:
    """``9 min 05 s``: the countdown, written anew in each poll's fragment."""
    left = int(seconds)
    if left <= 0:
        return "time is up"
    hours, rest = divmod(left, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def undo_text(step: StepView) -> str:
    """The step's undo column: how its undo ended, or how it is going."""
    if step.undo_outcome:
        return step.undo_outcome + (f" after {step.undo_attempts} attempts" if step.undo_attempts > 1 else "")
    if step.undo_error:
        return f"failed: {step.undo_error}"
    if step.state is StepState.COMPENSATING and step.undo_attempts > 1:
        return f"attempt {step.undo_attempts}"
    return ""
