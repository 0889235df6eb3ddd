"""One booking: its page, its live JSON status, and cancelling it.

``GET /bookings/<id>`` renders the whole status server-side (readable without
JavaScript). While the run is open, htmx polls ``GET /bookings/<id>/fragment``,
the same template the page includes, and swaps it in; the fragment of a closed
run asks for no further poll. The page is drawn here and nowhere else: no
script rebuilds it. ``GET /bookings/<id>/status`` is the same status as JSON,
for scripts. All of them read the workflow's ``status`` query; for a closed run
whose query no worker answers, they fall back to the run's result or failure.

Anyone with the (unguessable) id may *read* the page and its JSON: it is the
shareable link to a booking. Acting on it is narrower: confirm, decline and
cancel are only for the browser that booked it or a logged-in operator
(``web.owners``); anyone else gets 403 and no Update or cancel is sent. Retry,
resolve, approve-undo and keep stay operator-only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from werkzeug.wrappers import Response

from trip.models import WORKFLOW_ID_RE
from trip.status import PROVIDER_NAMES, ConfirmResult, OperatorActionResult, SagaStatus
from web.auth import current_operator, operator_required
from web.owners import is_operator, may_act, owner_required
from web.portal import current_portal
from web.status_view import BookingView, load_booking, remaining_text, undo_text
from wiring.updates import (
    PAUSED_MESSAGE,
    decide,
    decide_undo,
    is_paused,
    rejection_message,
    resolve,
    retry_compensation,
)

bp = Blueprint("status", __name__, url_prefix="/bookings")


def _template_context(view: BookingView) -> dict[str, Any]:
    """What ``booking_status.html`` needs: the page and the fragment pass the same."""
    return {
        "view": view,
        "poll_ms": current_app.config["POLL_INTERVAL_MS"],
        "remaining_text": remaining_text,
        "undo_text": undo_text,
        "provider_names": PROVIDER_NAMES,
        "operator": is_operator(),
        "may_act": may_act(view.workflow_id),
        "may_cancel": may_cancel(view),
    }


def render_booking(view: BookingView, *, action_error: str | None = None, status: int = 200) -> tuple[str, int]:
    return render_template("booking.html", action_error=action_error, **_template_context(view)), status


def may_cancel(view: BookingView) -> bool:
    """The booking's browser may cancel it, except while an operator settles its stuck steps."""
    if is_operator():
        return True
    return may_act(view.workflow_id) and view.saga_status != SagaStatus.NEEDS_ATTENTION.value


@bp.get("/<workflow_id>")
def booking_page(workflow_id: str) -> tuple[str, int]:
    return render_booking(load_booking(workflow_id))


@bp.get("/<workflow_id>/fragment")
def booking_fragment(workflow_id: str) -> Response:
    """The status part of the page alone: what each poll swaps in."""
    fragment = render_template("booking_status.html", **_template_context(load_booking(workflow_id)))
    response = current_app.make_response(fragment)
    response.headers["Cache-Control"] = "no-store"
    return response


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


def _paused(workflow_id: str) -> tuple[str, int]:
    """An Update the server refused because the run is paused: nothing was sent to the workflow."""
    return render_booking(load_booking(workflow_id), action_error=f"This booking is {PAUSED_MESSAGE}.", status=409)


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
        if is_paused(err):
            return _paused(workflow_id)
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


def _undo_decision(workflow_id: str, *, approve: bool) -> Response | tuple[str, int]:
    """``approve_undo`` / ``keep`` for the form's ``step``; the note is required, as for resolve."""
    step = request.form.get("step", "")
    note = request.form.get("note", "")
    operator = current_operator()
    return _operator_update(
        workflow_id,
        lambda handle: decide_undo(handle, approve=approve, step=step, operator=operator, note=note),
        # An approval returns once the undo has run, with its retry budget.
        current_app.config["RETRY_TIMEOUT"] if approve else current_app.config["TEMPORAL_TIMEOUT"],
    )


@bp.post("/<workflow_id>/approve-undo")
@operator_required
def approve_undo(workflow_id: str) -> Response | tuple[str, int]:
    """Cancel a reservation whose undo costs money, accepting the fee."""
    return _undo_decision(workflow_id, approve=True)


@bp.post("/<workflow_id>/keep")
@operator_required
def keep_step(workflow_id: str) -> Response | tuple[str, int]:
    """Do not cancel a reservation whose undo costs money: it stays, recorded as kept."""
    return _undo_decision(workflow_id, approve=False)


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
        if is_paused(err):
            return _paused(workflow_id)
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
