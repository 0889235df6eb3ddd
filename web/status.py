"""One booking: its page, its live JSON status, and cancelling it.

``GET /bookings/<id>`` renders the whole status server-side (readable without
JavaScript); ``status.js`` then polls ``GET /bookings/<id>/status`` and
updates the page until the saga ends. Both read the workflow's ``status``
query; for a closed run whose query no worker answers, they fall back to the
run's result or failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, url_for
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode
from werkzeug.wrappers import Response

from trip.models import WORKFLOW_ID_RE
from trip.temporal import Outcome, await_outcome, fetch_status, web_ui_url
from web.portal import current_portal
from workflows.status import TERMINAL, BookingStatus, SagaStatus

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

    @property
    def web_ui_url(self) -> str:
        return web_ui_url(self.workflow_id, self.namespace, base=self.ui_base)

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
            "error": error,
            "note": self.note,
            "web_ui_url": self.web_ui_url,
        }


async def _load(client: Client, workflow_id: str, ui_base: str, query_timeout: timedelta) -> BookingView:
    # Runs on the portal's loop thread: no Flask context here, so settings come in as arguments.
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise BookingNotFound(workflow_id) from err
        raise
    closed = description.status not in (None, WorkflowExecutionStatus.RUNNING)
    status: BookingStatus | None = None
    note = None
    try:
        status = await fetch_status(handle, rpc_timeout=query_timeout)
    except (RPCError, WorkflowQueryFailedError):
        note = "Step details are unavailable: no worker is answering queries for this booking right now."
    outcome = await await_outcome(handle) if closed else None
    if status is not None:
        saga_status = status.status.value
    elif outcome is not None and outcome.status is not None:
        saga_status = outcome.status.value
    else:
        saga_status = SagaStatus.RUNNING.value if not closed else "UNKNOWN"
    return BookingView(
        workflow_id=workflow_id,
        namespace=client.namespace,
        ui_base=ui_base,
        saga_status=saga_status,
        closed=closed,
        temporal_status=description.status.name if description.status else "UNKNOWN",
        start_time=description.start_time,
        status=status,
        outcome=outcome,
        note=note,
    )


def load_booking(workflow_id: str) -> BookingView:
    if not WORKFLOW_ID_RE.match(workflow_id):
        abort(404)
    try:
        config = current_app.config
        timeout = timedelta(seconds=config["QUERY_TIMEOUT"])
        return current_portal().call(lambda client: _load(client, workflow_id, config["TEMPORAL_UI_URL"], timeout))
    except BookingNotFound:
        abort(404)


@bp.get("/<workflow_id>")
def booking_page(workflow_id: str) -> str:
    view = load_booking(workflow_id)
    return render_template(
        "booking.html",
        view=view,
        terminal={s.value for s in TERMINAL},
        poll_ms=current_app.config["POLL_INTERVAL_MS"],
    )


@bp.get("/<workflow_id>/status")
def booking_status(workflow_id: str) -> Response:
    response = jsonify(load_booking(workflow_id).to_json())
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/<workflow_id>/cancel")
def cancel_booking(workflow_id: str) -> Response:
    view = load_booking(workflow_id)
    if view.closed:
        flash("This booking has already finished; there is nothing to cancel.", "info")
    else:
        current_portal().call(lambda client: client.get_workflow_handle(workflow_id).cancel())
        flash("Cancellation requested: everything booked so far is being undone.", "info")
    return redirect(url_for("status.booking_page", workflow_id=workflow_id), code=303)
