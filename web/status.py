"""One booking: its page, its live JSON status, and cancelling it.

``GET /bookings/<id>`` renders the whole status server-side (readable without
JavaScript); ``status.js`` then polls ``GET /bookings/<id>/status`` and
updates the page until the saga ends. Both read the workflow's ``status``
query; for a closed run whose query no worker answers, they fall back to the
run's result or failure.

Anyone with the (unguessable) id may *read* the page and its JSON: it is the
shareable link to a booking. Acting on it is narrower: confirm, decline and
cancel are only for the browser that booked it or a logged-in operator
(``web.owners``); anyone else gets 403 and no Update or cancel is sent. Retry
and resolve stay operator-only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from werkzeug.wrappers import Response

from trip.models import WORKFLOW_ID_RE
from trip.status import TERMINAL, BookingStatus, ConfirmResult, OperatorActionResult, SagaStatus
from web.auth import current_operator, operator_required
from web.owners import is_operator, may_act, owner_required
from web.portal import current_portal
from wiring.client import web_ui_url
from wiring.executions import WorkflowPaused
from wiring.live_status import fetch_status
from wiring.outcome import Outcome, await_outcome
from wiring.paused_status import describe_execution
from wiring.updates import decide, rejection_message, resolve, retry_compensation

bp = Blueprint("status", __name__, url_prefix="/bookings")


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
    def ticket(self) -> str | None:
        """The flight's ticket number (hold and confirm), from the query or the run's result."""
        if self.status is not None and self.status.ticket:
            return self.status.ticket
        if self.outcome is not None and self.outcome.result is not None:
            return self.outcome.result.ticket
        return None

    @property
    def confirm_remaining_s(self) -> float | None:
        """Seconds left to confirm a held trip, by the server's clock; None unless it waits."""
        confirmation = self.status.confirmation if self.status else None
        if confirmation is None or confirmation.decision is not None:
            return None
        deadline = confirmation.deadline
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=timezone.utc)
        return max(0.0, (deadline - datetime.now(timezone.utc)).total_seconds())

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
            # Hold and confirm: ``remaining_s`` lets the page count down without trusting the browser's clock.
            "confirmation": (
                {**status.confirmation.model_dump(mode="json"), "remaining_s": self.confirm_remaining_s}
                if status and status.confirmation
                else None
            ),
            "past_pivot": status.past_pivot if status else False,
            "ticket": self.ticket,
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
    """``9 min 05 s``: the countdown as the page first shows it (``status.js`` then ticks it)."""
    left = int(seconds)
    if left <= 0:
        return "time is up"
    hours, rest = divmod(left, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def render_booking(view: BookingView, *, action_error: str | None = None, status: int = 200) -> tuple[str, int]:
    return render_template(
        "booking.html",
        view=view,
        terminal={s.value for s in TERMINAL},
        poll_ms=current_app.config["POLL_INTERVAL_MS"],
        action_error=action_error,
        remaining_text=remaining_text,
        may_act=may_act(view.workflow_id),
        may_cancel=may_cancel(view),
    ), status


def may_cancel(view: BookingView) -> bool:
    """The booking's browser may cancel it, except while an operator settles its stuck steps."""
    if is_operator():
        return True
    return may_act(view.workflow_id) and view.saga_status != SagaStatus.NEEDS_ATTENTION.value


@bp.get("/<workflow_id>")
def booking_page(workflow_id: str) -> tuple[str, int]:
    return render_booking(load_booking(workflow_id))


@bp.get("/<workflow_id>/status")
def booking_status(workflow_id: str) -> Response:
    response = jsonify(load_booking(workflow_id).to_json())
    response.headers["Cache-Control"] = "no-store"
    return response


def cancel_message(view: BookingView) -> str:
    """What a cancel will do, as the workflow handles it (``workflows.booking``).

    Before the traveller confirms, everything booked is undone. Once they have
    confirmed the ticket may exist, so the saga goes on forward and the cancel
    changes nothing; only while it waits for an operator past the pivot does a
    cancel end it, and then the ticket stands and nothing is undone.
    """
    s = view.status
    confirmed = s is not None and (
        s.past_pivot or (s.confirmation is not None and s.confirmation.decision == "confirmed")
    )
    if not confirmed:
        return "Cancellation requested: everything booked so far is being undone."
    if view.saga_status == SagaStatus.NEEDS_ATTENTION.value:
        return (
            "Cancellation requested: the trip was already confirmed, so nothing is undone and the ticket stands. "
            "The booking ends with its unfinished steps left for an operator to settle by hand."
        )
    return (
        "Too late to cancel: the trip was already confirmed and a flight ticket cannot be undone, "
        "so the booking goes on forward (ticket, then the car and hotel confirmed). Nothing is undone."
    )


@bp.post("/<workflow_id>/cancel")
@owner_required
def cancel_booking(workflow_id: str) -> Response | tuple[str, int]:
    view = load_booking(workflow_id)
    if not may_cancel(view):
        # A cancel here would end the run with its stuck steps unsettled and take it off
        # the operators' /attention queue: only an operator may decide that.
        message = (
            "An operator is settling this booking's stuck steps, so it can no longer be cancelled from here; "
            "nothing was changed."
        )
        return render_booking(view, action_error=message, status=409)
    if not view.closed:
        try:
            current_portal().call(lambda client: client.get_workflow_handle(workflow_id).cancel())
        except RPCError as err:
            # Closed since the look above. The dev server (1.32) accepts a cancel of a
            # closed run and does nothing; other servers answer NOT_FOUND.
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            view = load_booking(workflow_id)
        else:
            flash(cancel_message(view), "info")
            return redirect(url_for("status.booking_page", workflow_id=workflow_id), code=303)
    message = f"This booking has already ended ({view.saga_status}); there is nothing to cancel."
    return render_booking(view, action_error=message, status=409)


def _operator_update(
    workflow_id: str, send: Callable[[WorkflowHandle[Any, Any]], Awaitable[OperatorActionResult]], timeout: float
) -> Response | tuple[str, int]:
    """Send one operator Update; a rejected one re-renders the page with its reason (409)."""
    if not WORKFLOW_ID_RE.match(workflow_id):
        abort(404)
    try:
        result = current_portal().call(lambda client: send(client.get_workflow_handle(workflow_id)), timeout=timeout)
    except WorkflowUpdateFailedError as err:
        return render_booking(load_booking(workflow_id), action_error=rejection_message(err), status=409)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # gone, or closed since the page was drawn
            view = load_booking(workflow_id)
            return render_booking(view, action_error="This booking is no longer waiting for an operator.", status=409)
        raise
    outcomes = ", ".join(f"{step}: {state}" for step, state in result.outcomes.items())
    flash(f"Done ({outcomes}). Still outstanding: {', '.join(result.outstanding) or 'nothing'}.", "info")
    return redirect(url_for("status.booking_page", workflow_id=workflow_id), code=303)


@bp.post("/<workflow_id>/retry")
@operator_required
def retry_undo(workflow_id: str) -> Response | tuple[str, int]:
    """Retry the outstanding undos: the form's ``step``, or all of them when it has none."""
    step = request.form.get("step", "").strip()
    note = request.form.get("note", "").strip() or (f"retry {step} from the web app" if step else "retry all")
    operator = current_operator()
    return _operator_update(
        workflow_id,
        lambda handle: retry_compensation(handle, operator=operator, note=note, steps=[step] if step else None),
        current_app.config["RETRY_TIMEOUT"],
    )


@bp.post("/<workflow_id>/resolve")
@operator_required
def resolve_step(workflow_id: str) -> Response | tuple[str, int]:
    """Record that ``step``'s reservation was released outside the system; the note is required."""
    step = request.form.get("step", "")
    note = request.form.get("note", "")
    operator = current_operator()
    return _operator_update(
        workflow_id,
        lambda handle: resolve(handle, step=step, operator=operator, note=note),
        current_app.config["TEMPORAL_TIMEOUT"],
    )


def _traveller_decision(
    workflow_id: str, send: Callable[[WorkflowHandle[Any, Any]], Awaitable[ConfirmResult]], done: str
) -> Response | tuple[str, int]:
    """Send ``confirm`` or ``decline``; one the workflow rejects re-renders the page with its reason (409)."""
    if not WORKFLOW_ID_RE.match(workflow_id):
        abort(404)
    try:
        current_portal().call(lambda client: send(client.get_workflow_handle(workflow_id)))
    except WorkflowUpdateFailedError as err:
        return render_booking(load_booking(workflow_id), action_error=rejection_message(err), status=409)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # gone, or closed since the page was drawn
            view = load_booking(workflow_id)
            return render_booking(view, action_error="This trip is no longer waiting for your answer.", status=409)
        raise
    flash(done, "info")
    return redirect(url_for("status.booking_page", workflow_id=workflow_id), code=303)


def _note() -> str:
    return request.form.get("note", "").strip()


@bp.post("/<workflow_id>/confirm")
@owner_required
def confirm_booking(workflow_id: str) -> Response | tuple[str, int]:
    """The traveller confirms a held trip: the flight is ticketed, then the holds are finalized."""
    note = _note()
    return _traveller_decision(
        workflow_id,
        lambda handle: decide(handle, confirm=True, note=note),
        "Confirmed: the flight is being ticketed and your holds turned into bookings.",
    )


@bp.post("/<workflow_id>/decline")
@owner_required
def decline_booking(workflow_id: str) -> Response | tuple[str, int]:
    """The traveller declines a held trip: every hold is released."""
    note = _note()
    return _traveller_decision(
        workflow_id, lambda handle: decide(handle, confirm=False, note=note), "Declined: every hold is being released."
    )
